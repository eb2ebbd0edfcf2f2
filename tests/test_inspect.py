"""inspect.summarize and `diffaug inspect`: values checked against plain computations."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from diffaug_genomics.encode import encode_fasta
from diffaug_genomics.errors import InputError
from diffaug_genomics.inspect import format_summary, summarize
from diffaug_genomics.io.h5 import EMBEDDINGS_SCHEMA, ONEHOT_SCHEMA, write_embeddings

CLI = [sys.executable, "-m", "diffaug_genomics_cli.main"]


def test_example_summary_matches_plain_counts(example_h5, example_fasta):
    seqs = [s for s in example_fasta.read_text().split("\n") if s and not s.startswith(">")]
    gc = np.array([(s.count("G") + s.count("C")) / len(s) for s in seqs])
    got = summarize(example_h5)
    assert got["schema"] == ONEHOT_SCHEMA and got["n"] == 500 and got["length"] == 200
    assert got["labels"] == {"GM12878": 125, "HepG2": 125, "K562": 125, "hESCT0": 125}
    assert got["lengths"]["min"] == got["lengths"]["max"] == 200
    assert got["gc"]["mean"] == pytest.approx(gc.mean()) and got["gc"]["sd"] == pytest.approx(
        gc.std())
    assert got["n_fraction"] == 0.0 and got["source"] == "dhs_example.fa"
    text = format_summary(got)
    assert "500 x 200" in text and "GM12878 125" in text and "GC content" in text


def test_lengths_and_n_fraction(tmp_path):
    seqs = ["ACGTNN", "GGNNNNNNNNCC", "A", "ccgg"]
    src = tmp_path / "in.fa"
    src.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    out = tmp_path / "o.h5"
    encode_fasta(src, out, length=8, show_progress=False)
    got = summarize(out)
    lengths = np.array([min(len(s), 8) for s in seqs])
    kept = [s[:8] for s in seqs]
    assert got["lengths"]["median"] == np.median(lengths)
    assert got["lengths"]["q25"] == np.quantile(lengths, 0.25)
    assert got["lengths"]["padded_rows"] == 3 and got["labels"] is None
    n_count = sum(s.upper().count("N") for s in kept)
    assert got["n_fraction"] == pytest.approx(n_count / lengths.sum())
    gc = [sum(c in "GCgc" for c in s) / sum(c in "ACGTacgt" for c in s) for s in kept]
    assert got["gc"]["mean"] == pytest.approx(np.mean(gc))


def test_embeddings_file(tmp_path):
    path = tmp_path / "emb.h5"
    write_embeddings(path, np.zeros((6, 3), np.float32), [f"r{i}" for i in range(6)],
                     labels=["a", "b", "a", "a", "b", "c"])
    got = summarize(path)
    assert got["schema"] == EMBEDDINGS_SCHEMA and (got["n"], got["dim"]) == (6, 3)
    assert got["labels"] == {"a": 3, "b": 2, "c": 1}
    assert "6 x 3" in format_summary(got)


def make_bad(tmp_path, kind: str):
    path = tmp_path / f"{kind}.h5"
    if kind == "text":
        path.write_text(">r\nACGT\n")
    elif kind == "truncated":
        encode_fasta_small(tmp_path / "full.h5")
        path.write_bytes((tmp_path / "full.h5").read_bytes()[:3000])
    elif kind in ("no_schema", "other_schema", "missing_lengths", "values"):
        with h5py.File(path, "w") as f:
            f.create_dataset("onehot", data=np.full((2, 3, 4), 2 if kind == "values" else 0,
                                                    np.uint8))
            f.create_dataset("ids", data=np.array(["a", "b"], dtype=object),
                             dtype=h5py.string_dtype())
            if kind != "missing_lengths":
                f.create_dataset("lengths", data=np.array([3, 3], np.int32))
            if kind != "no_schema":
                f.attrs["schema"] = "something/else" if kind == "other_schema" else ONEHOT_SCHEMA
    return path


def encode_fasta_small(out):
    src = out.with_suffix(".fa")
    src.write_text("".join(f">r{i}\nACGTACGTAC\n" for i in range(50)))
    encode_fasta(src, out, show_progress=False)


@pytest.mark.parametrize("kind, reason", [
    ("truncated", "HDF5"), ("no_schema", "not a diffaug file"),
    ("other_schema", "not a diffaug file"), ("missing_lengths", "/lengths is missing"),
    ("values", "values other than 0 and 1"),
])
def test_bad_files(tmp_path, kind, reason):
    path = make_bad(tmp_path, kind)
    with pytest.raises(InputError) as info:
        summarize(path)
    assert reason in info.value.reason and info.value.path == str(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        summarize(tmp_path / "nope.h5")
    with pytest.raises(InputError, match="directory"):
        summarize(tmp_path)


def test_cli_inspect(example_h5, tmp_path):
    ok = subprocess.run([*CLI, "inspect", str(example_h5)], capture_output=True, text=True)
    assert ok.returncode == 0 and "diffaug-genomics/onehot/1" in ok.stdout
    assert "N x L         500 x 200" in ok.stdout
    # a file is described by what it holds, not by its name
    fasta = make_bad(tmp_path, "text")
    proc = subprocess.run([*CLI, "inspect", str(fasta)], capture_output=True, text=True)
    assert proc.returncode == 0 and "kind          FASTA" in proc.stdout and "records       1" \
        in proc.stdout
    bad = make_bad(tmp_path, "other_schema")
    proc = subprocess.run([*CLI, "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"diffaug: error: {bad}: is an HDF5 file that is not a "
                                  "diffaug file (schema 'something/else'")
