"""Large inputs at small scale: the approximate neighbour search, compact features, the bank in
a file, sampled diagnostics, rows read in blocks (the sizes are lowered so each runs in seconds;
the figures at 10^4-10^6 rows are ``benchmarks/bench_scale.py``'s)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import test_train
import torch
from conftest import EXAMPLES, REPO, read_example_rows
from test_train import assert_same, final_state, make_trainer, stop_at_last_step_and_resume

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5 import open_onehot, read_onehot
from diffaug_genomics.io.onehot_writer import OneHotWriter
from diffaug_genomics.positives import neighbour_search
from diffaug_genomics.positives.knn import knn_indices, neighbour_features
from diffaug_genomics.positives.neighbour_search import approximate_knn, find_neighbours
from diffaug_genomics.train import bank_store, run_diagnostics
from diffaug_genomics.train.bank_store import DiskBank

micro_cfg = test_train.micro_cfg  # fixtures
reference = test_train.reference


@pytest.fixture(scope="module")
def all_rows() -> np.ndarray:
    """The 500 bundled DHS sequences, (500, 200, 4) uint8."""
    return read_example_rows(EXAMPLES / "dhs_example.fa")


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact, strict=True)]))


def test_approximate_search_finds_most_true_neighbours_and_is_seeded(all_rows):
    feats = neighbour_features(all_rows, "kmer", kmer_k=3)
    exact = knn_indices(feats, 5)
    found = approximate_knn(feats, 5, seed=0, leaf_rows=64, trees=4)
    assert found.shape == (500, 5) and found.dtype == np.int64
    assert not (found == np.arange(500)[:, None]).any()  # never a row itself
    assert all(len(set(r)) == 5 for r in found)  # distinct neighbours
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = lambda nb: float((unit[:, None, :] * unit[nb]).sum(-1).mean())  # noqa: E731
    random = np.random.default_rng(0).integers(0, 500, (500, 5))
    # leaves of 64 of 500 rows (13 %), 4 trees: most of the true neighbours, and neighbours
    # nearly as similar as the true ones (random rows: about 0)
    assert _recall(found, exact) > 0.6, _recall(found, exact)
    assert sim(found) > 0.9 * sim(exact) and sim(random) < 0.2 * sim(exact)
    np.testing.assert_array_equal(found, approximate_knn(feats, 5, seed=0, leaf_rows=64,
                                                         trees=4))
    assert not np.array_equal(found, approximate_knn(feats, 5, seed=1, leaf_rows=64, trees=4))
    # one tree with one leaf holding every row is the exact search
    np.testing.assert_array_equal(approximate_knn(feats, 5, leaf_rows=500, trees=1), exact)


def test_approximate_search_handles_duplicates_and_float16():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 8)).astype(np.float32)
    feats = np.concatenate([base, base[:50], np.ones((40, 8), np.float32)])  # copies, ties
    found = approximate_knn(feats.astype(np.float16), 3, seed=0, leaf_rows=32, trees=3)
    assert not (found == np.arange(len(feats))[:, None]).any()
    assert all(len(set(r)) == 3 for r in found)
    # a copy is the nearest neighbour of its original (found in a shared leaf by some tree)
    assert np.mean(found[:50, 0] == np.arange(300, 350)) > 0.9


def test_find_neighbours_is_exact_up_to_the_threshold(all_rows, monkeypatch):
    feats = neighbour_features(all_rows, "kmer", kmer_k=3)
    np.testing.assert_array_equal(find_neighbours(feats, 4), knn_indices(feats, 4))
    assert neighbour_search.search_method(500) == "exact"
    monkeypatch.setattr(neighbour_search, "EXACT_MAX_ROWS", 100)
    assert neighbour_search.search_method(500).startswith("pca-forest")
    np.testing.assert_array_equal(find_neighbours(feats, 4, seed=3),
                                  approximate_knn(feats, 4, seed=3))


@pytest.mark.parametrize("kmer_k", [3, 5])
def test_compact_kmer_features_keep_the_cosines(all_rows, kmer_k):
    """float16, streamed; at k = 5 (1,024 k-mers) projected onto 256 directions."""
    full = neighbour_features(all_rows, "kmer", kmer_k=kmer_k)
    compact = neighbour_features(all_rows, "kmer", kmer_k=kmer_k, compact=True, seed=0)
    assert compact.dtype == np.float16 and compact.shape == (500, min(4**kmer_k, 256))
    streamed = neighbour_features(lambda: (all_rows[i:i + 128] for i in range(0, 500, 128)),
                                  "kmer", kmer_k=kmer_k, compact=True, seed=0)
    np.testing.assert_array_equal(streamed, compact)  # chunking changes nothing

    def cosines(f: np.ndarray) -> np.ndarray:
        u = f.astype(np.float64)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        return u[:100] @ u[100:].T

    err = np.abs(cosines(compact) - cosines(full))
    assert err.max() < (0.01 if kmer_k == 3 else 0.3) and err.mean() < (0.002 if kmer_k == 3
                                                                       else 0.06), err.max()


def test_a_bank_on_disk_trains_the_same_weights_and_resumes_bit_for_bit(
        micro_cfg, example_rows, reference, tmp_path, monkeypatch):
    """A bank over BANK_HOST_MAX_BYTES lives in cache/bank.npy, read by rows: the same run as
    with the bank in memory, stopped in the last encoder stage and resumed too."""
    monkeypatch.setattr(bank_store, "BANK_HOST_MAX_BYTES", 0)
    trainer = make_trainer(micro_cfg, example_rows, tmp_path / "disk")
    trainer.run()
    assert isinstance(trainer.progress.bank, DiskBank)
    assert (tmp_path / "disk" / "cache" / "bank.npy").is_file()
    assert not (tmp_path / "disk" / "cache" / "bank.pt").exists()
    assert_same(final_state(trainer), final_state(reference[0]))
    np.testing.assert_array_equal(trainer.progress.bank[np.arange(len(example_rows))].numpy(),
                                  reference[0].progress.bank.numpy())
    assert _same_but_timings((tmp_path / "disk" / "metrics.csv").read_text(),
                             (reference[1] / "metrics.csv").read_text())
    resumed = stop_at_last_step_and_resume(micro_cfg, example_rows, tmp_path / "stopped")
    assert_same(final_state(resumed), final_state(reference[0]))


def _same_but_timings(a: str, b: str) -> bool:
    """metrics.csv rows equal but for their timings."""
    import csv
    import io

    ra, rb = list(csv.DictReader(io.StringIO(a))), list(csv.DictReader(io.StringIO(b)))
    drop = ("time_s", "samples_per_s")
    return len(ra) == len(rb) and all(
        {k: v for k, v in x.items() if k not in drop} == {k: v for k, v in y.items()
                                                          if k not in drop}
        for x, y in zip(ra, rb, strict=True))


def test_a_damaged_bank_file_is_a_clear_error(tmp_path):
    shape = (6, 1, 4, 10)
    path = tmp_path / "bank.npy"
    np.save(path, np.ones(shape, np.float16))
    bank = DiskBank(path, shape)
    assert torch.equal(bank[torch.tensor([5, 0])], torch.ones((2, 1, 4, 10), dtype=torch.float16))
    assert bank[np.array([1, 2]), 0].shape == (2, 4, 10)
    with pytest.raises(InputError, match="expected float16"):
        DiskBank(path, (7, 1, 4, 10))
    np.save(path, np.ones(shape, np.float32))
    with pytest.raises(InputError, match="expected float16"):
        DiskBank(path, shape)
    data = path.read_bytes()
    np.save(path, np.ones(shape, np.float16))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="wrong size"):
        DiskBank(path, shape)
    path.write_bytes(b"not a bank" + data[:20])
    with pytest.raises(InputError, match="not a bank"):
        DiskBank(path, shape)


def test_positive_statistics_compare_with_a_fixed_sample_of_many_rows(reference, monkeypatch):
    """Above REFERENCE_ROWS rows the nearest-other-row identity is taken over a fixed sample
    that holds the sources: identity to the source unchanged, nearest at most the full one."""
    trainer = reference[0]
    monkeypatch.setattr(run_diagnostics, "POSITIVE_STATS_ROWS", 20)
    full = run_diagnostics.bank_diagnostics(trainer.setup, trainer.progress)
    monkeypatch.setattr(run_diagnostics, "REFERENCE_ROWS", 40)
    sampled = run_diagnostics.bank_diagnostics(trainer.setup, trainer.progress)
    assert sampled["pos_identity_source"] == full["pos_identity_source"]
    assert sampled["pos_kmer3_l1"] == full["pos_kmer3_l1"]
    assert sampled["pos_identity_nearest"] <= full["pos_identity_nearest"]


def test_embeddings_of_every_row_are_those_of_batches(reference, example_rows):
    trainer = reference[0]
    z = trainer.setup.embed_all(trainer.models.encoder, batch_size=48)
    trainer.models.encoder.eval()
    with torch.no_grad():
        direct = torch.cat([trainer.models.encoder(trainer.setup.x(np.arange(i, min(i + 48, 128))))
                            for i in range(0, 128, 48)])
    assert torch.equal(z, direct)


def test_a_damaged_chunk_of_rows_names_the_file_and_rows(example_rows, tmp_path, monkeypatch):
    path = tmp_path / "rows.h5"
    with OneHotWriter(path, 200, {"policy": "center"}) as w:
        w.append(np.concatenate([example_rows] * 4), [f"s{i}" for i in range(512)],
                 np.full(512, 200))
    with open_onehot(path) as f:
        monkeypatch.setattr("diffaug_genomics.io.h5.READ_BLOCK_ROWS", 100)
        np.testing.assert_array_equal(read_onehot(f, path), np.concatenate([example_rows] * 4))
        np.testing.assert_array_equal(read_onehot(f, path, 130, 260),
                                      np.concatenate([example_rows] * 4)[130:260])
        info = f["onehot"].id.get_chunk_info(1)
        first = info.chunk_offset[0]
        rows = f["onehot"].chunks[0]
    damaged = tmp_path / "damaged.h5"
    shutil.copyfile(path, damaged)
    with open(damaged, "r+b") as fh:
        fh.seek(info.byte_offset + 50)
        fh.write(b"\xff" * 100)
    with open_onehot(damaged) as f, pytest.raises(InputError) as err:
        read_onehot(f, damaged)
    assert str(damaged) in str(err.value)
    assert f"rows {first}-{first + rows - 1} cannot be read" in str(err.value)


def test_fit_reports_a_damaged_chunk_in_one_line(example_rows, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "rows.h5"
    with OneHotWriter(path, 200, {"policy": "center"}) as w:
        w.append(example_rows, [f"s{i}" for i in range(128)], np.full(128, 200))
    with h5py.File(path, "r") as f:
        info = f["onehot"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 50)
        fh.write(b"\xff" * 100)
    proc = subprocess.run([str(Path(sys.executable).parent / "diffaug"), "fit", str(path), "-o",
                           str(tmp_path / "run"), "--preset", "tiny"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("diffaug: error")]
    assert len(errors) == 1 and "rows 0-" in errors[0], proc.stderr  # one line, no traceback
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_micro_run_above_the_exact_threshold_caches_its_method(micro_cfg, example_rows, tmp_path,
                                                              monkeypatch):
    monkeypatch.setattr(neighbour_search, "EXACT_MAX_ROWS", 64)
    cfg = dataclasses.replace(micro_cfg, schedule=dataclasses.replace(micro_cfg.schedule,
                                                                       rounds=0))
    trainer = make_trainer(cfg, example_rows, tmp_path / "run")
    trainer.run()
    cached = np.load(next((tmp_path / "run" / "cache").glob("neighbours-*.npz")))
    assert "pca-forest" in str(cached["meta"])
    assert trainer.progress.neighbours.shape == (128, cfg.knn.k)
