"""Run directories written by an earlier release still embed and generate bit-identically.

``tests/data/old_run/`` holds tiny DNA, tabular and image runs trained by the release at commit
0014e6b, the inputs they were embedded from and what that release wrote (see
``tests/data/old_run/make_old_run.py``). Each test runs the same command through the command
line and compares the output with the stored one: the same arrays and strings in the HDF5 and
``.npy`` files (creation times and absolute paths aside), byte-identical FASTA, and the same
summary line (timings aside).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_cli_modalities import cli as run_cli

OLD = Path(__file__).resolve().parent / "data" / "old_run"
VOLATILE_ATTRS = {"created", "run_dir", "checkpoint", "source"}
"""Attributes that depend on when and where the file was written."""


def cli(capsys, *args: object) -> str:
    """Run the CLI in this process; it must succeed. Returns its log (stderr)."""
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    return err


def assert_same_hdf5(new: Path, old: Path, added: tuple[str, ...] = ()) -> None:
    """Same datasets with equal values and dtypes (the new file may hold the datasets
    ``added`` since), same attributes except the volatile ones."""
    with h5py.File(new, "r") as a, h5py.File(old, "r") as b:
        assert sorted(set(a) - set(added)) == sorted(b)
        for name in b:
            assert a[name].dtype == b[name].dtype, name
            assert np.array_equal(a[name][()], b[name][()]), name
        keys = set(b.attrs) - VOLATILE_ATTRS
        assert set(a.attrs) - VOLATILE_ATTRS == keys
        for key in keys:
            assert np.array_equal(a.attrs[key], b.attrs[key]), key


def summary(log: str, verb: str) -> str:
    """The command's summary line with its timings blanked."""
    line = next(ln for ln in log.splitlines() if f"INFO {verb} " in ln)
    line = line.split("INFO ", 1)[1]
    return re.sub(r"\b\d+(\.\d+)? s\b|\(\d+ [a-z]+/s\)|\d+\.\d s per 1000", "<t>", line)


@pytest.mark.parametrize("source", ["dna_input.fa", "dna_input.h5"])
def test_dna_run_embeds_identically(capsys, tmp_path, source):
    out = tmp_path / "emb.h5"
    log = cli(capsys, "embed", OLD / "dna_run", OLD / source, "-o", out)
    ref = "dna_embeddings.h5" if source.endswith(".fa") else "dna_embeddings_from_h5.h5"
    assert_same_hdf5(out, OLD / ref, added=("regions",))
    with h5py.File(out) as f:  # since 0.x: the part of its record each row covers
        regions = [r.decode() for r in f["regions"][()]]
        ids = [r.decode() for r in f["ids"][()]]
    assert regions == [f"{i}:0-48" for i in ids]
    assert summary(log, "embedded") == ("embedded 32 sequences into 8 dimensions in <t> <t>, "
                                        "embeddings HDF5")


def test_dna_run_generates_identically(capsys, tmp_path):
    out = tmp_path / "pos.fa"
    log = cli(capsys, "generate", OLD / "dna_run", OLD / "dna_input.fa", "-o", out, "-k", "2",
              "--seed", "3")
    # the same sequences bit for bit; headers now say which bases of the source they cover
    old = (OLD / "dna_positives.fa").read_text().splitlines()
    new = out.read_text().splitlines()
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        if b.startswith(">"):
            sid = b.split(" source=")[1].split()[0]
            assert a == b.replace(f"source={sid} ", f"source={sid}:0-48 ")
        else:
            assert a == b
    assert summary(log, "generated").startswith("generated 64 positives of 32 sequences: mean "
                                                "identity to source ")


def test_tabular_run_embeds_and_generates_identically(capsys, tmp_path):
    log = cli(capsys, "embed", OLD / "tabular_run", OLD / "wine_input.csv", "-o", tmp_path / "e.h5")
    assert_same_hdf5(tmp_path / "e.h5", OLD / "tabular_embeddings.h5")
    assert summary(log, "embedded") == ("embedded 40 samples into 8 dimensions in <t> <t>, "
                                        "embeddings HDF5")
    with h5py.File(tmp_path / "e.h5", "r") as f:
        assert "labels" in f  # the run's label column, never a feature
    log = cli(capsys, "generate", OLD / "tabular_run", OLD / "wine_input.csv", "-o",
              tmp_path / "p.npy", "-k", "2", "--seed", "3")
    new, old = np.load(tmp_path / "p.npy"), np.load(OLD / "tabular_positives.npy")
    assert new.dtype == old.dtype and np.array_equal(new, old)
    assert summary(log, "generated").startswith("generated 80 positives of 40 samples: RMS ")


def test_image_run_embeds_and_generates_identically(capsys, tmp_path):
    cli(capsys, "embed", OLD / "image_run", OLD / "digits_input.npy", "-o", tmp_path / "e.h5")
    assert_same_hdf5(tmp_path / "e.h5", OLD / "image_embeddings.h5")
    cli(capsys, "generate", OLD / "image_run", OLD / "digits_input.npy", "-o",
        tmp_path / "p.h5", "-k", "2", "--seed", "3")
    assert_same_hdf5(tmp_path / "p.h5", OLD / "image_positives.h5")
