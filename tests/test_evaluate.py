"""Evaluation protocols on embeddings of known separability, label alignment, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffaug_genomics.errors import InputError
from diffaug_genomics.evaluate import (
    SCHEMA,
    evaluate_embeddings,
    hungarian_accuracy,
)
from diffaug_genomics.io.h5 import write_embeddings
from diffaug_genomics.kmers import baseline_features

DIFFAUG = str(Path(sys.executable).parent / "diffaug")
CLASSES = np.array(["GM12878", "HepG2", "K562", "hESCT0"])


def separable(n_per_class: int = 30, dim: int = 8, seed: int = 0):
    """Class c sits at 8 * e_c plus N(0, 1) noise: separable by a margin of many sds, in
    Euclidean and in cosine geometry."""
    rng = np.random.default_rng(seed)
    y = np.repeat(CLASSES, n_per_class)
    x = rng.normal(size=(len(y), dim)).astype(np.float32)
    x[np.arange(len(y)), np.searchsorted(CLASSES, y)] += 8.0
    order = rng.permutation(len(y))
    return x[order], y[order]


def test_separable_embeddings_score_perfectly():
    x, y = separable()
    report = evaluate_embeddings(x, y, folds=5, seed=0)
    for name in ("linear", "knn", "svc"):
        acc = report["protocols"][name]["metrics"]["accuracy"]
        assert acc["mean"] == 1.0 and acc["sd"] == 0.0 and len(acc["values"]) == 5
        assert report["protocols"][name]["metrics"]["macro_f1"]["mean"] == 1.0
    km = report["protocols"]["kmeans"]["metrics"]
    assert km["ari"]["mean"] > 0.99 and km["nmi"]["mean"] > 0.99 and km["accuracy"]["mean"] == 1.0
    assert report["protocols"]["kmeans"]["fitted_on"] == "all"


def test_random_embeddings_are_near_chance():
    # 400 samples, 4 balanced-ish random classes, 16 pure-noise dimensions. Under the null, the
    # accuracy pooled over 400 out-of-fold predictions has sd sqrt(0.25 * 0.75 / 400) = 0.022;
    # a tolerance of 0.1 around 0.25 is over 4 sd (observed 0.21-0.31 over seeds 0-4).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    y = rng.choice(CLASSES, size=400)
    report = evaluate_embeddings(x, y, folds=5, seed=0)
    for name in ("linear", "knn", "svc"):
        assert abs(report["protocols"][name]["metrics"]["accuracy"]["mean"] - 0.25) < 0.1, name
    km = report["protocols"]["kmeans"]["metrics"]
    # ARI is 0 in expectation under the null; NMI has a small positive bias (about 0.005 here)
    assert abs(km["ari"]["mean"]) < 0.03 and km["nmi"]["mean"] < 0.03
    assert 0.25 <= report["chance"] < 0.32


def test_report_schema():
    x, y = separable(10)
    report = evaluate_embeddings(x, y, protocols=("knn", "linear"), folds=3, seed=1)
    assert set(report) == {"schema", "tool_version", "created", "mode", "folds", "seed", "n",
                           "n_test", "dim", "input_dim", "pca_dim", "pca_explained_variance",
                           "classes", "class_counts", "chance", "protocols", "warnings"}
    assert report["schema"] == SCHEMA == "diffaug-genomics/evaluation/1"
    assert report["mode"] == "cross-validation" and report["folds"] == 3 and report["seed"] == 1
    assert (report["n"], report["n_test"], report["dim"]) == (40, None, 8)
    assert report["classes"] == sorted(CLASSES.tolist())
    assert report["class_counts"] == {"train": dict.fromkeys(sorted(CLASSES), 10), "test": None}
    assert report["chance"] == 0.25
    assert list(report["protocols"]) == ["linear", "knn"]  # canonical order
    entry = report["protocols"]["knn"]
    assert set(entry) == {"params", "seconds", "metrics"} and entry["params"]["k"] == 10
    assert set(entry["metrics"]) == {"accuracy", "macro_f1"}
    assert set(entry["metrics"]["accuracy"]) == {"mean", "sd", "values"}
    json.dumps(report, allow_nan=False)


def test_fixed_split():
    x, y = separable(30, seed=0)
    tx, ty = separable(10, seed=1)
    report = evaluate_embeddings(x, y, tx, ty, protocols=("linear", "knn", "kmeans"))
    assert report["mode"] == "fixed-split" and report["folds"] is None
    assert (report["n"], report["n_test"]) == (120, 40)
    assert report["class_counts"]["test"] == dict.fromkeys(sorted(CLASSES), 10)
    acc = report["protocols"]["linear"]["metrics"]["accuracy"]
    assert acc == {"mean": 1.0, "sd": None, "values": [1.0]}
    assert report["protocols"]["kmeans"]["fitted_on"] == "test"
    # the test set really is what gets scored: flip its labels and accuracy collapses
    flipped = evaluate_embeddings(x, y, tx, ty[::-1], protocols=("knn",))
    assert flipped["protocols"]["knn"]["metrics"]["accuracy"]["mean"] < 0.6
    # a test class absent from training is reported, not fatal
    ty2 = ty.copy()
    ty2[0] = "HUVEC"
    warned = evaluate_embeddings(x, y, tx, ty2, protocols=("knn",))
    assert any("HUVEC" in w for w in warned["warnings"])


def test_input_errors():
    x, y = separable(4)
    with pytest.raises(InputError, match="a single class"):
        evaluate_embeddings(x, np.repeat("a", len(x)))
    with pytest.raises(InputError, match="has 4 sample.*fewer than the 5 folds"):
        evaluate_embeddings(x, y, folds=5)
    with pytest.raises(InputError, match="D = 3, the training embeddings D = 8"):
        evaluate_embeddings(x, y, x[:, :3], y)
    with pytest.raises(InputError, match="unknown protocol"):
        evaluate_embeddings(x, y, protocols=("umap",), folds=2)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        evaluate_embeddings(bad, y, folds=2)


def test_hungarian_accuracy_ignores_cluster_names():
    y = np.array(list("aabbcc"))
    assert hungarian_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert hungarian_accuracy(y, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)


def test_baseline_features():
    from diffaug_genomics.alphabet import one_hot

    onehot = np.stack([one_hot("GGCCAATTNN"), one_hot("AAAAAAAAAA")])
    gc = baseline_features(onehot, "gc")
    assert gc.shape == (2, 1) and gc.dtype == np.float32 and gc[:, 0].tolist() == [0.5, 0.0]
    flat = baseline_features(onehot, "onehot")
    assert flat.shape == (2, 40) and flat.sum() == 18
    pytest.importorskip("diffaug_genomics.kmers")
    spectrum = baseline_features(onehot, "kmer", k=3)
    assert spectrum.shape == (2, 64) and np.allclose(spectrum.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="unknown baseline kind"):
        baseline_features(onehot, "gapped")


# ------------------------------------------------------------------------------- the CLI


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([DIFFAUG, "evaluate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_aligns_tsv_labels_by_id(tmp_path):
    x, y = separable(20)
    ids = [f"r{i:03d}" for i in range(len(y))]
    write_embeddings(tmp_path / "emb.h5", x, ids)  # no /labels: they come from the TSV
    rows = list(zip(ids, y, strict=True))
    np.random.default_rng(5).shuffle(rows)
    (tmp_path / "labels.tsv").write_text(
        "label\tid\textra\n" + "".join(f"{lab}\t{i}\tz\n" for i, lab in rows))
    proc = _run("emb.h5", "--labels", "labels.tsv", "--protocol", "linear,knn,kmeans",
                "--folds", "4", "-o", "report.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "linear" in proc.stdout and "1.000 ± 0.000" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == SCHEMA and report["folds"] == 4
    assert report["protocols"]["knn"]["metrics"]["accuracy"]["mean"] == 1.0  # aligned by id
    assert report["inputs"]["labels"] == "labels.tsv"
    assert report["inputs"]["embeddings_attrs"]["schema"] == "diffaug-genomics/embeddings/1"


def test_cli_errors_are_one_line(tmp_path):
    x, y = separable(3)
    ids = [f"r{i}" for i in range(len(y))]
    write_embeddings(tmp_path / "nolabels.h5", x, ids)
    write_embeddings(tmp_path / "small.h5", x, ids, labels=list(y))
    for args, expect in (
        (["nolabels.h5"], "nolabels.h5: no labels"),
        (["small.h5", "--protocol", "knn"], "small.h5: class 'GM12878' has 3 sample(s), fewer "
                                            "than the 5 folds"),
    ):
        proc = _run(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], proc.stderr


# ------------------------------------------------------- --features: sequences as a reference


def test_sequence_features_of_fasta_match_each_record_alone(tmp_path):
    """FASTA records of different lengths are padded per batch; padding is not a base, so each
    row is exactly the spectrum of its record alone (and the HDF5 path gives the same)."""
    from diffaug_genomics.alphabet import one_hot
    from diffaug_genomics.encode import encode_fasta
    from diffaug_genomics.evaluate_inputs import sequence_features
    from diffaug_genomics.kmers import kmer_counts

    seqs = {"short": "ACGTA", "mid": "GGGCCCATATNNACGTTT", "long": "ACGT" * 10 + "GATTACA"}
    fasta = tmp_path / "r.fa"
    fasta.write_text("".join(f">{k} note\n{v}\n" for k, v in seqs.items()))
    feats, ids, labels, attrs = sequence_features(fasta, "kmer:3")
    assert ids == list(seqs) and labels is None and attrs["features"] == "kmer:3"
    assert feats.shape == (3, 64) and feats.dtype == np.float32
    for row, seq in zip(feats, seqs.values(), strict=True):
        assert np.array_equal(row, kmer_counts(one_hot(seq)[None], 3)[0])
    encode_fasta(fasta, tmp_path / "r.h5", length=64)
    again, ids_h5, _, _ = sequence_features(tmp_path / "r.h5", "kmer:3")
    assert ids_h5 == ids and np.array_equal(again, feats)
    gc, _, _, _ = sequence_features(fasta, "gc")
    assert gc[:, 0].tolist() == pytest.approx([0.4, 8 / 16, 22 / 47])


def test_cli_scores_the_kmer_spectrum_of_real_sequences(tmp_path, example_fasta, example_labels):
    """The bundled 500 DHS sequences: 4-mer frequencies carry cell-type signal (well above
    chance), GC alone much less; the report says which features were scored."""
    from diffaug_genomics.encode import encode_fasta

    encode_fasta(example_fasta, tmp_path / "ex.h5", length=200, labels=example_labels)
    proc = _run(str(example_fasta), "--labels", str(example_labels), "--features", "kmer:4",
                "--protocol", "linear", "-o", "kmer.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kmer = json.loads((tmp_path / "kmer.json").read_text())
    assert kmer["dim"] == 256 and kmer["inputs"]["features"] == "kmer:4"
    kmer_acc = kmer["protocols"]["linear"]["metrics"]["accuracy"]["mean"]
    proc = _run("ex.h5", "--features", "gc", "--protocol", "linear", "-o", "gc.json",
                cwd=tmp_path)  # labels from the HDF5 file's /labels
    assert proc.returncode == 0, proc.stderr
    gc_acc = json.loads((tmp_path / "gc.json").read_text())["protocols"]["linear"]["metrics"][
        "accuracy"]["mean"]
    assert kmer_acc > kmer["chance"] + 0.1 and kmer_acc > gc_acc + 0.05


def test_cli_features_errors_are_one_line(tmp_path, example_fasta):
    x, y = separable(10)
    write_embeddings(tmp_path / "emb.h5", x, [f"r{i}" for i in range(len(y))], labels=list(y))
    for args, expect in (
        ([str(example_fasta), "--features", "kmer:9"], "--features: expected kmer:K"),
        ([str(example_fasta), "--features", "onehot"], "dhs_example.fa: --features onehot needs"),
        (["emb.h5", "--features", "gc"], "emb.h5: --features needs DNA sequences"),
    ):
        proc = _run(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0] and "Traceback" not in proc.stderr


# --------------------------------------------------------- --pca: the same-size reference


def test_pca_is_fitted_on_the_training_set_only():
    """A test set with a huge extra direction would dominate a PCA fitted on both: the
    projection, the explained variance and the scores must not move with it."""
    from sklearn.decomposition import PCA

    from diffaug_genomics.evaluate import pca_reduce

    x, y = separable(40, dim=12, seed=1)
    tx, ty = separable(20, dim=12, seed=2)
    outlier = tx.copy()
    outlier[:, 11] += np.random.default_rng(3).normal(scale=1e3, size=len(tx))
    train_a, test_a, explained_a = pca_reduce(x, tx, 3)
    train_b, test_b, explained_b = pca_reduce(x, outlier, 3)
    assert np.array_equal(train_a, train_b) and explained_a == explained_b
    direct = PCA(n_components=3, random_state=0).fit(x)
    assert explained_a == pytest.approx(direct.explained_variance_ratio_.sum())
    np.testing.assert_allclose(test_a, direct.transform(tx), rtol=1e-4, atol=1e-4)
    both = PCA(n_components=3, random_state=0).fit(np.vstack([x, outlier]))
    assert not np.allclose(np.abs(both.components_), np.abs(direct.components_), atol=0.1)
    report = evaluate_embeddings(x, y, tx, ty, protocols=("linear", "knn"), pca_dim=3)
    same = evaluate_embeddings(test_free := direct.transform(x), y, direct.transform(tx), ty,
                               protocols=("linear", "knn"))
    assert test_free.shape == (len(x), 3)
    for proto in ("linear", "knn"):
        assert (report["protocols"][proto]["metrics"]["accuracy"]
                == same["protocols"][proto]["metrics"]["accuracy"])
    assert (report["pca_dim"], report["dim"], report["input_dim"]) == (3, 3, 12)
    assert report["pca_explained_variance"] == pytest.approx(explained_a)
    plain = evaluate_embeddings(x, y, tx, ty, protocols=("linear",))
    assert plain["pca_dim"] is None and plain["pca_explained_variance"] is None
    with pytest.raises(InputError, match="--pca 13"):
        evaluate_embeddings(x, y, tx, ty, protocols=("linear",), pca_dim=13)


def test_cli_pca_reference_of_real_sequences(tmp_path, example_fasta, example_labels):
    """`--features kmer:4 --pca 16` on the bundled DHS sequences: the JSON records the PCA (in
    a fixed split fitted on the training file alone), and the reduced 4-mer spectrum still
    carries cell-type signal."""
    from diffaug_genomics.encode import encode_fasta

    encode_fasta(example_fasta, tmp_path / "ex.h5", length=200, labels=example_labels)
    proc = _run("ex.h5", "--features", "kmer:4", "--pca", "16", "--protocol", "linear",
                "-o", "pca.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "pca.json").read_text())
    assert (report["pca_dim"], report["dim"], report["input_dim"]) == (16, 16, 256)
    assert 0 < report["pca_explained_variance"] < 1
    assert report["protocols"]["linear"]["metrics"]["accuracy"]["mean"] > report["chance"] + 0.1
    assert "PCA 256 -> 16" in proc.stdout
    proc = _run("ex.h5", "--features", "kmer:4", "--pca", "16", "--test", "ex.h5",
                "--protocol", "linear", "-o", "fixed.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    from sklearn.decomposition import PCA

    from diffaug_genomics.evaluate_inputs import sequence_features

    feats = sequence_features(tmp_path / "ex.h5", "kmer:4")[0]
    direct = PCA(n_components=16, random_state=0).fit(feats).explained_variance_ratio_.sum()
    assert fixed["pca_explained_variance"] == pytest.approx(direct, rel=1e-5)
    # cross-validation: fitted on each fold's training part, about the same share
    assert report["pca_explained_variance"] == pytest.approx(direct, rel=0.05)
