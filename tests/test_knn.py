"""kNN-mixup positives: features, exact blocked kNN, cache, mixing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from diffaug_genomics.alphabet import one_hot
from diffaug_genomics.positives import knn
from diffaug_genomics.positives.knn import (
    knn_indices,
    knn_mixup,
    label_agreement,
    neighbour_features,
    sample_neighbour_index,
)
from diffaug_genomics.positives.neighbour_search import load_neighbours, save_neighbours


def _onehot(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    arr = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))]
    arr[rng.random((n, length)) < 0.02] = 0  # some N
    return arr


# --- knn_indices ---------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("blocks", [(4096, 16384), (17, 23), (1, 7)])
def test_knn_matches_sklearn_brute_force(metric: str, blocks: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(150, 12)).astype(np.float32) + 0.3
    got = knn_indices(feats, 6, metric=metric, batch_size=blocks[0],
                      candidate_block_size=blocks[1])
    nn = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(feats)
    ref = nn.kneighbors(feats, return_distance=False)
    assert got.dtype == np.int64 and got.shape == (150, 6)
    assert not (got == np.arange(150)[:, None]).any()  # self excluded
    # sklearn lists the query itself first; drop it
    ref = np.stack([r[r != i][:6] for i, r in enumerate(ref)])
    np.testing.assert_array_equal(got, ref)


def test_knn_duplicates_are_neighbours_and_ties_go_to_lower_index() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 5)).astype(np.float32)
    feats = np.concatenate([base, base[:3]])  # rows 20, 21, 22 duplicate 0, 1, 2
    for blocks in [(4096, 16384), (3, 4)]:
        got = knn_indices(feats, 2, metric="euclidean", batch_size=blocks[0],
                          candidate_block_size=blocks[1])
        assert got[0, 0] == 20 and got[20, 0] == 0
        assert got[2, 0] == 22 and got[22, 0] == 2
    # all features equal: every distance ties, lowest indices win, self skipped
    same = np.ones((9, 3), np.float32)
    for blocks in [(4096, 16384), (2, 3)]:
        for metric in ["cosine", "euclidean"]:
            got = knn_indices(same, 3, metric=metric, batch_size=blocks[0],
                              candidate_block_size=blocks[1])
            assert got[0].tolist() == [1, 2, 3]
            assert got[1].tolist() == [0, 2, 3]
            assert got[8].tolist() == [0, 1, 2]


def test_knn_rejects_bad_arguments() -> None:
    feats = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError):
        knn_indices(feats, 5)
    with pytest.raises(ValueError):
        knn_indices(feats, 2, metric="manhattan")


# --- neighbour_features --------------------------------------------------------------------

def _stream(arr: np.ndarray, size: int):  # noqa: ANN202
    return lambda: (arr[i:i + size] for i in range(0, len(arr), size))


@pytest.mark.parametrize("fit_rows", [20_000, 40])
def test_features_shapes_and_streaming_equals_in_memory(
        fit_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn, "PCA_FIT_ROWS", fit_rows)  # 40 exercises the subsample
    arr = _onehot(np.random.default_rng(2), 130, 24)
    pca = neighbour_features(arr, "onehot-pca", pca_dim=8, seed=3)
    assert pca.shape == (130, 8) and pca.dtype == np.float32
    np.testing.assert_allclose(neighbour_features(_stream(arr, 37), "onehot-pca", pca_dim=8,
                                                  seed=3), pca, atol=1e-5)
    km = neighbour_features(arr, "kmer", kmer_k=3)
    assert km.shape == (130, 64) and km.dtype == np.float32
    np.testing.assert_allclose(neighbour_features(_stream(arr, 37), "kmer", kmer_k=3), km,
                               atol=1e-6)
    np.testing.assert_allclose(km.mean(0), 0, atol=1e-6)  # centred
    emb = np.random.default_rng(0).normal(size=(130, 16))
    e = neighbour_features(arr, "embedding", embeddings=emb)
    assert e.shape == (130, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-5)
    with pytest.raises(ValueError):
        neighbour_features(arr, "embedding")
    with pytest.raises(ValueError):
        neighbour_features(arr, "pixels")


def test_pca_dim_capped_by_fit_rows() -> None:
    arr = _onehot(np.random.default_rng(0), 12, 10)
    assert neighbour_features(arr, "onehot-pca", pca_dim=50).shape == (12, 12)


# --- cache ---------------------------------------------------------------------------------

def test_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    path = tmp_path / "neighbours.npz"
    idx = np.arange(30, dtype=np.int64).reshape(10, 3) % 10  # neighbours among the 10 rows
    meta = {"space": "kmer", "k": 3, "N": 10, "data_sha256": "ab12", "shape": (200, 4)}
    assert load_neighbours(path, meta) is None  # missing
    save_neighbours(path, idx, meta)
    np.testing.assert_array_equal(load_neighbours(path, meta), idx)
    assert load_neighbours(path, {**meta, "shape": [200, 4]}) is not None  # JSON-equal
    for key, value in [("space", "onehot-pca"), ("k", 5), ("N", 11), ("data_sha256", "cd")]:
        assert load_neighbours(path, {**meta, key: value}) is None
    assert load_neighbours(path, {**meta, "extra": 1}) is None
    save_neighbours(path, idx[:, :2], {**meta, "k": 2})  # overwrite in place
    assert load_neighbours(path, meta) is None
    assert load_neighbours(path, {**meta, "k": 2}).shape == (10, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["neighbours.npz"]  # no temporaries left
    path.write_bytes(b"not a zip")
    assert load_neighbours(path, meta) is None


# --- mixing --------------------------------------------------------------------------------

def test_knn_mixup_is_convex_and_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(64, 4, 30, generator=g), torch.randn(64, 4, 30, generator=g)
    out = knn_mixup(x, n, torch.Generator().manual_seed(5), alpha_range=(0.3, 0.4))
    assert out.shape == x.shape
    lo, hi = torch.minimum(x, n), torch.maximum(x, n)
    assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()
    a = ((out - n) / (x - n)).flatten(1)  # recovered alpha, one per sample
    assert torch.allclose(a, a[:, :1].expand_as(a), atol=1e-3)
    assert ((a >= 0.3 - 1e-4) & (a <= 0.4 + 1e-4)).all()
    again = knn_mixup(x, n, torch.Generator().manual_seed(5), alpha_range=(0.3, 0.4))
    assert torch.equal(out, again)
    assert not torch.equal(out, knn_mixup(x, n, torch.Generator().manual_seed(6)))
    # any trailing shape; endpoints of the default range
    t = knn_mixup(torch.zeros(200, 3), torch.ones(200, 3), torch.Generator().manual_seed(1))
    assert t.shape == (200, 3) and 0 <= t.min() and t.max() <= 1 and t.std() > 0.2
    assert torch.equal(knn_mixup(x, n, alpha_range=(1.0, 1.0)), x)
    with pytest.raises(ValueError):
        knn_mixup(x, n[:2])


def test_sample_neighbour_index() -> None:
    indices = np.arange(40, dtype=np.int64).reshape(10, 4) + 100
    batch = np.array([3, 3, 7, 0] * 250)
    for rng in [np.random.default_rng(0), torch.Generator().manual_seed(0)]:
        got = sample_neighbour_index(indices, batch, rng)
        assert got.shape == (1000,) and got.dtype == np.int64
        assert all(v in indices[b] for v, b in zip(got, batch, strict=True))
        counts = np.bincount(got[batch == 3] - 112, minlength=4)
        assert counts.min() > 60  # 500 draws over 4 neighbours: each about 125
    a = sample_neighbour_index(indices, batch, torch.Generator().manual_seed(4))
    b = sample_neighbour_index(indices, torch.from_numpy(batch), torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(a, b)


def test_label_agreement() -> None:
    indices = np.array([[1, 2], [0, 2], [0, 1]])
    assert label_agreement(indices, ["a", "a", "b"]) == pytest.approx(2 / 6)


# --- diagnostic on the bundled real example (printed, not asserted) ------------------------

def test_label_agreement_on_bundled_example(example_fasta: Path, example_labels: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    if not example_fasta.exists() or not example_labels.exists():
        pytest.skip("bundled example not present")
    ids, seqs = [], []
    for line in example_fasta.read_text().splitlines():
        if line.startswith(">"):
            ids.append(line[1:].split()[0])
            seqs.append("")
        elif line.strip():
            seqs[-1] += line.strip()
    with open(example_labels) as fh:
        label_of = {r["id"]: r["label"] for r in csv.DictReader(fh, delimiter="\t")}
    labels = np.array([label_of[i] for i in ids])
    length = max(len(s) for s in seqs)
    arr = np.zeros((len(seqs), length, 4), np.uint8)
    for i, s in enumerate(seqs):
        arr[i, :len(s)] = one_hot(s)
    rows = [("onehot-pca", {}), *[("kmer", {"kmer_k": k}) for k in (3, 4, 5, 6)]]
    with capsys.disabled():
        print(f"\nlabel agreement of 10 nearest neighbours, {len(seqs)} sequences "
              f"(chance {sum(np.mean(labels == u) ** 2 for u in set(labels)):.3f})")
        for space, kw in rows:
            feats = neighbour_features(arr, space, **kw)
            agree = label_agreement(knn_indices(feats, 10), labels)
            assert 0.0 <= agree <= 1.0
            print(f"  {space:<10} {kw.get('kmer_k', ''):>2}  {agree:.3f}")
