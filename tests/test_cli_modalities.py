"""Images and tables end to end through the command line: fit -> embed -> evaluate (-> generate),
.h5ad round trip, plugins, and bad inputs (exit 2, one line naming the file and row or image)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_registry import install_plugin

from diffaug_genomics.io.h5 import read_embeddings
from diffaug_genomics.io.h5ad import read_embeddings_h5ad, read_h5ad
from diffaug_genomics.io.samples import ReadOptions

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {**os.environ, "DIFFAUG_NO_BAR": "1"}
FAST = ["generator.steps=6", "generator.steps_per_checkpoint=6", "bank.steps=2",
        "schedule.warmup_epochs=1", "schedule.epochs_per_round=1"]
FAST_ARGS = [a for o in FAST for a in ("--set", o)]


def run(*args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*DIFFAUG, *map(str, args)], capture_output=True, env=env or ENV,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr.decode()}")
    return proc


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from diffaug_genomics_cli.main import main

    from diffaug_genomics.progress import LOG

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    finally:  # the log handler holds this test's captured stderr: drop it
        for handler in [h for h in LOG.handlers if getattr(h, "_diffaug", False)]:
            LOG.removeHandler(handler)
    out, err = capsys.readouterr()
    return code, out, err


def cli_ok(capsys, *args) -> str:
    """In-process run that must succeed; its stdout."""
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from sklearn.datasets import load_digits, load_wine

    root = tmp_path_factory.mktemp("data")
    d = load_digits()
    np.save(root / "digits.npy", d.images[:150].astype(np.float32))  # (150, 8, 8), 0-16
    w = load_wine()
    with open(root / "wine.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["", *w.feature_names, "cultivar"])
        for i, (x, y) in enumerate(zip(w.data, w.target, strict=True)):
            out.writerow([f"w{i:03d}", *x, f"c{y}"])
    with h5py.File(root / "wine.h5ad", "w") as f:  # the old AnnData layout (scanpy's examples)
        f["X"] = w.data.astype(np.float32)
        obs = np.zeros(len(w.target), dtype=[("index", "S8"), ("cultivar", "i1")])
        obs["index"] = [f"w{i:03d}".encode() for i in range(len(w.target))]
        obs["cultivar"] = w.target
        f["obs"] = obs
        var = np.zeros(13, dtype=[("index", "S40")])
        var["index"] = [n.encode() for n in w.feature_names]
        f["var"] = var
        f["uns/cultivar_categories"] = np.array([b"c0", b"c1", b"c2"])
    from PIL import Image

    for i in range(60):
        folder = root / "digits_png" / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def digits_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits"
    proc = run("fit", data / "digits.npy", "-o", out, "--preset", "tiny", *FAST_ARGS)
    assert "modality=image" in proc.stderr.decode()
    return out


def test_images_from_npy_fit_embed_evaluate_generate(digits_run, data, tmp_path, capsys):
    state = json.loads((digits_run / "preprocess.json").read_text())["state"]
    assert (state["height"], state["width"], state["channels"], state["hi"]) == (8, 8, 1, 16.0)
    emb = tmp_path / "emb.h5"
    run("embed", digits_run, data / "digits.npy", "-o", emb)  # a real process: the installed CLI
    x, ids, labels, _ = read_embeddings(emb)
    assert x.shape == (150, 16) and ids[:2] == ["0", "1"] and labels is None
    gen = tmp_path / "gen.npy"
    cli_ok(capsys, "generate", digits_run, data / "digits.npy", "-o", gen, "-k", "2", "--steps", "2")
    samples = np.load(gen)
    assert samples.shape == (300, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 16
    code, _, err = cli(capsys, "generate", digits_run, data / "digits.npy", "-o", "-")
    assert code == 2 and ".npy" in err and ".h5" in err


def test_image_folder_labels_reach_evaluate(digits_run, data, tmp_path, capsys):
    emb = tmp_path / "emb.h5"
    cli_ok(capsys, "embed", digits_run, data / "digits_png", "-o", emb)  # 0-255 PNGs, same scale
    x, ids, labels, _ = read_embeddings(emb)
    assert x.shape == (60, 16) and ids[0].endswith("/000.png") and labels[0] == ids[0][0]
    rep = json.loads(cli_ok(capsys, "evaluate", emb, "--protocol", "knn", "--folds", "2",
                            "-o", "-"))
    assert rep["n"] == 60 and len(rep["classes"]) == 10


def test_table_with_label_column(data, tmp_path, capsys):
    out = tmp_path / "run"
    proc = run("fit", data / "wine.csv", "-o", out, "--preset", "tiny", "--label-column",
               "cultivar", *FAST_ARGS, "--set", "tabular.scaling=minmax")
    assert "modality=tabular" in proc.stderr.decode()
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["modality"] == "tabular" and pre["state"]["n_features"] == 13  # no label column
    assert pre["state"]["scaling"] == "minmax"
    emb = tmp_path / "emb.h5"
    cli_ok(capsys, "embed", out, data / "wine.csv", "-o", emb, "--label-column", "cultivar")
    x, ids, labels, _ = read_embeddings(emb)
    assert x.shape == (178, 8) and ids[0] == "w000" and sorted(set(labels)) == ["c0", "c1", "c2"]
    rep = json.loads(cli_ok(capsys, "evaluate", emb, "--protocol", "linear,knn", "-o", "-"))
    assert rep["n"] == 178 and rep["protocols"]["linear"]["metrics"]["accuracy"]["mean"] > 0.5
    raw = json.loads(cli_ok(capsys, "evaluate", data / "wine.csv", "--label-column", "cultivar",
                            "--protocol", "linear", "-o", "-"))
    assert raw["dim"] == 13 and raw["inputs"]["embeddings_attrs"]["raw_features"] is True
    gen = tmp_path / "gen.h5"
    cli_ok(capsys, "generate", out, data / "wine.csv", "--label-column", "cultivar", "-o", gen)
    with h5py.File(gen) as f:
        assert f["samples"].shape == (178, 13) and f["source_ids"][0].decode() == "w000"
    # the embedding input must have the training features
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    code, _, err = cli(capsys, "embed", out, tmp_path / "other.csv", "-o", tmp_path / "x.h5")
    assert code == 2 and "2 features but the run was trained on 13" in err


def test_h5ad_round_trip(data, tmp_path, capsys):
    out = tmp_path / "run"
    cli_ok(capsys, "fit", data / "wine.h5ad", "-o", out, "--preset", "tiny", *FAST_ARGS,
           "--augment", "handcrafted")
    assert not (out / "generator.pt").exists()
    emb = tmp_path / "emb.h5ad"
    code, _, err = cli(capsys, "embed", out, data / "wine.h5ad", "-o", emb, "--obs-key",
                       "cultivar")
    assert code == 0 and "obsm['X_diffaug']" in err
    with h5py.File(emb) as f:
        assert f.attrs["encoding-type"] == "anndata"
        assert f["obsm/X_diffaug"].shape == (178, 8)
        assert f["uns/diffaug/label_key"][()].decode() == "cultivar"
    _, ids, labels, _ = read_embeddings_h5ad(emb)
    assert ids[:2] == ["w000", "w001"] and len(set(labels)) == 3
    # the user's AnnData comes back whole: its features are still X, its obs still there
    kept = read_h5ad(emb, ReadOptions(obs_key="cultivar"))
    original = read_h5ad(data / "wine.h5ad", ReadOptions(obs_key="cultivar"))
    np.testing.assert_array_equal(kept.values, original.values)
    assert kept.labels == original.labels and kept.ids == original.ids
    rep = json.loads(cli_ok(capsys, "evaluate", emb, "--protocol", "knn", "-o", "-"))
    assert rep["n"] == 178 and rep["dim"] == 8 and len(rep["classes"]) == 3  # labels from obs
    raw = json.loads(cli_ok(capsys, "evaluate", data / "wine.h5ad", "--obs-key", "cultivar",
                            "--protocol", "knn", "-o", "-"))
    assert raw["dim"] == 13


def test_plugins_through_entry_points_and_backbone(data, tmp_path):
    install_plugin(tmp_path / "site")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"),
                                                 ENV.get("PYTHONPATH", "")])}
    common = ["--label-column", "cultivar", "--preset", "tiny", "--augment", "knn-mixup",
              "--set", "encoder.backbone=linear", "--set", "schedule.warmup_epochs=1"]
    out = tmp_path / "run"
    run("fit", data / "wine.csv", "-o", out, "--modality", "toytab", *common, env=env)
    # the same plugin named as code to import; the run's modality must be known to embed it
    out2 = tmp_path / "run2"
    run("fit", data / "wine.csv", "-o", out2, "--backbone", "toyplugin_mod:make", *common, env=env)
    proc = run("embed", out2, data / "wine.csv", "-o", tmp_path / "e2.h5", "--label-column",
               "cultivar", check=False)  # no plugin on the path here
    assert proc.returncode == 2 and b"unknown modality 'toytab'" in proc.stderr
    run("embed", out, data / "wine.csv", "-o", tmp_path / "e.h5", "--label-column", "cultivar",
        env=env)  # found through its entry point
    assert read_embeddings(tmp_path / "e.h5")[0].shape == (178, 8)


def _bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    from PIL import Image

    (root / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    (root / "word.tsv").write_text("a\tb\n1\t2\n3\tabc\n")
    (root / "nan.csv").write_text("a,b\n1,2\n3,nan\n")
    np.save(root / "inf.npy", np.array([[1.0, 2.0], [np.inf, 0.0]]))
    (root / "mixed" / "x").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "mixed" / "x" / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(root / "mixed" / "x" / "b.png")
    (root / "empty").mkdir()
    return {
        "ragged": (root / "ragged.csv", "ragged.csv: line 3: expected 3 fields"),
        "word": (root / "word.tsv", "word.tsv: line 3: column 'b': not a number: 'abc'"),
        "nan": (root / "nan.csv", "nan.csv: line 3: column 'b': nan is not a finite number"),
        "inf": (root / "inf.npy", "inf.npy: row 1, column 0: inf is not a finite number"),
        "mixed": (root / "mixed", "x/b.png: image is 9x8 (height x width) but x/a.png is 8x8"),
        "empty": (root / "empty", "empty: is a folder that is neither a run directory nor holds PNG/JPEG images"),
    }


@pytest.mark.parametrize("case", ["ragged", "word", "nan", "inf", "mixed", "empty"])
def test_bad_inputs_exit_2_naming_file_and_row(case, tmp_path, capsys):
    path, needle = _bad_inputs(tmp_path)[case]
    code, _, err = cli(capsys, "fit", path, "-o", tmp_path / "run", "--preset", "tiny")
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert needle in lines[-1] and lines[-1].startswith("diffaug: error: "), err
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_modality_override_and_detection_errors(data, tmp_path, capsys):
    code, _, err = cli(capsys, "fit", tmp_path / "nothing.csv", "-o", tmp_path / "r")
    assert code == 2 and "nothing.csv: no such file" in err
    code, _, err = cli(capsys, "fit", data / "wine.csv", "-o", tmp_path / "r", "--modality", "sound")
    assert code == 2 and "unknown modality 'sound'" in err
    code, _, err = cli(capsys, "fit", data / "wine.csv", "-o", tmp_path / "r", "--set",
                    "encoder.backbone=resnet")
    assert code == 2 and "'encoder.backbone': 'resnet' is not available for modality 'tabular'" in err
    assert not (tmp_path / "r").exists()
    # --modality tabular reads images as flattened rows
    out = tmp_path / "flat"
    code, _, err = cli(capsys, "fit", data / "digits.npy", "-o", out, "--modality", "tabular",
                    "--preset", "tiny", "--augment", "knn-mixup")
    assert code in (0, None)
    assert json.loads((out / "preprocess.json").read_text())["state"]["n_features"] == 64
