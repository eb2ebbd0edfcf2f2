"""Fault injection: hostile files, full disks, signals and stale runs (issue #12).

Every case checks what the README promises for bad input and faults: the exit code, one line
on stderr naming the file (and the reason), no traceback, the inputs and any previous output
intact, and no temporary file left behind. One test per class, each parametrised over its
cases; the config range checks are generated from the config's own metadata.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffaug_genomics.config import BOUNDS, PAIRS, Bound, ConfigError, numeric_keys, resolve_config

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
MICRO = ["encoder.width=16", "encoder.embed_dim=16", "encoder.proj_hidden=32", "encoder.proj_dim=8",
         "encoder.n_blocks=1", "generator.channels=[8, 16]", "generator.time_dim=16",
         "generator.batch_size=32", "generator.steps=4", "generator.steps_per_checkpoint=2",
         "bank.steps=2", "bank.batch_size=64", "schedule.warmup_epochs=1", "schedule.rounds=1",
         "schedule.epochs_per_round=1", "optim.batch_size=32", "knn.k=4", "knn.kmer_k=3"]
SETS = [a for o in MICRO for a in ("--set", o)]
EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"


# ----------------------------------------------------------------------------------- helpers
def cli(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stderr)."""
    from diffaug_genomics_cli.main import main

    from diffaug_genomics.progress import LOG

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        for handler in [h for h in LOG.handlers if getattr(h, "_diffaug", False)]:
            LOG.removeHandler(handler)
    _, err = capsys.readouterr()
    return code, err


def fails(capsys, code: int, *args, names: str | Path | None = None, says: str = "") -> str:
    """The command exits with ``code`` and one error line (naming ``names``, saying ``says``)."""
    got, err = cli(capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("diffaug: error")]
    assert got == code, f"exit {got}, expected {code}:\n{err}"
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    if names is not None:
        assert str(names) in errors[0], errors[0]
    assert says.lower() in errors[0].lower(), errors[0]
    return errors[0]


def no_temp_files(*folders: Path) -> None:
    left = [p for folder in folders for p in Path(folder).rglob(".*.tmp")]
    assert not left, left


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_fasta(path: Path, n: int, skip: int = 0) -> Path:
    lines = EXAMPLE.read_text().splitlines()
    path.write_text("\n".join(lines[2 * skip:2 * (skip + n)]) + "\n")
    return path


def write_table(path: Path, n: int = 60, scale: float = 1.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["", "a", "b", "c", "d", "cell_type"])
        for i in range(n):
            out.writerow([f"r{i}", *np.round(rng.normal(0, scale, 4), 4), "xy"[i % 2]])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    write_fasta(root / "a.fa", 128)
    write_fasta(root / "b.fa", 128, skip=128)  # as many records, other sequences
    write_fasta(root / "short.fa", 96)
    write_table(root / "cells.csv")
    return root


@pytest.fixture(scope="module")
def dna_run(data) -> Path:
    from diffaug_genomics.fit import fit

    fit(data / "a.fa", data / "dna_run", preset="tiny", overrides=MICRO)
    return data / "dna_run"


@pytest.fixture(scope="module")
def tab_run(data) -> Path:
    from diffaug_genomics.fit import fit

    fit(data / "cells.csv", data / "tab_run", preset="tiny", overrides=MICRO,
        label_column="cell_type")
    return data / "tab_run"


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ------------------------------------------------- memory safety: crafted sparse .h5ad files
def _sparse_h5ad(path: Path, kind: str = "csr", **override) -> Path:
    dense = np.array([[1, 0, 2], [0, 0, 3], [4, 5, 0], [0, 6, 0], [7, 0, 8]], np.float32)
    major = dense if kind == "csr" else dense.T
    data, indices, indptr = [], [], [0]
    for row in major:
        nz = np.flatnonzero(row)
        data += list(row[nz])
        indices += list(nz)
        indptr.append(len(data))
    parts = {"data": np.asarray(data, np.float32), "indices": np.asarray(indices, np.int32),
             "indptr": np.asarray(indptr, np.int32), "shape": np.asarray(dense.shape)}
    parts.update(override)
    with h5py.File(path, "w") as f:
        g = f.create_group("X")
        g.attrs["encoding-type"] = f"{kind}_matrix"
        g.attrs["shape"] = parts.pop("shape")
        for name, value in parts.items():
            g[name] = value
        obs = f.create_group("obs")
        obs.attrs["_index"] = "_index"
        obs["_index"] = np.array([f"c{i}".encode() for i in range(5)])
    return path


SPARSE_CASES = {
    "indptr entry 10^6": ({"indptr": np.array([0, 2, 3, 10**6, 6, 8], np.int64)}, "indptr"),
    "indptr decreasing": ({"indptr": np.array([0, 2, 1, 5, 6, 8], np.int32)}, "decreases"),
    "indptr too short": ({"indptr": np.array([0, 2, 3, 5], np.int32)}, "entries, expected 6"),
    "indptr not from 0": ({"indptr": np.array([1, 2, 3, 5, 6, 8], np.int32)}, "starts at 1"),
    "indptr ends early": ({"indptr": np.array([0, 2, 3, 5, 6, 7], np.int32)}, "ends at 7"),
    "column past the last": ({"indices": np.array([0, 2, 3, 0, 1, 1, 0, 2], np.int32)},
                             "outside 0..2"),
    "negative index": ({"indices": np.array([0, -2, 2, 0, 1, 1, 0, 2], np.int32)}, "outside"),
    "float indices": ({"indices": np.array([0, 2, 2, 0, 1, 1, 0, 2], np.float32)},
                      "expected integers"),
    "data and indices differ": ({"data": np.arange(7, dtype=np.float32)}, "must agree"),
    "shape not two ints": ({"shape": np.array([5.5, 3.0])}, "two non-negative integers"),
    "negative shape": ({"shape": np.array([-5, 3])}, "two non-negative integers"),
    "complex data": ({"data": np.ones(8, np.complex64)}, "complex"),
    "data overflows float32": ({"data": np.full(8, 1e300)}, "float32"),
    "string data": ({"data": np.array([b"x"] * 8)}, "expected numbers"),
}


@pytest.mark.parametrize("case", sorted(SPARSE_CASES))
def test_crafted_sparse_h5ad_is_refused_before_expansion(case, data, tmp_path, capsys):
    override, says = SPARSE_CASES[case]
    bad = _sparse_h5ad(tmp_path / "bad.h5ad", **override)
    fails(capsys, 2, "fit", bad, "-o", tmp_path / "run", "--preset", "tiny", names=bad, says=says)
    assert not (tmp_path / "run" / "encoder.pt").exists()


@pytest.mark.parametrize("kind", ["csr", "csc"])
def test_valid_sparse_h5ad_reads_like_dense(kind, tmp_path):
    from diffaug_genomics.io.h5ad import read_h5ad
    from diffaug_genomics.io.samples import ReadOptions

    s = read_h5ad(_sparse_h5ad(tmp_path / "ok.h5ad", kind), ReadOptions())
    np.testing.assert_array_equal(s.values, [[1, 0, 2], [0, 0, 3], [4, 5, 0], [0, 6, 0], [7, 0, 8]])
    assert s.ids == [f"c{i}" for i in range(5)]


# ------------------------------------------------------------- FASTA shards checked on merge
@pytest.fixture(scope="module")
def fasta_shards(dna_run, data, tmp_path_factory) -> Path:
    from diffaug_genomics.generate import generate
    from diffaug_genomics.shards import Shard

    root = tmp_path_factory.mktemp("shards")
    for i in range(2):
        generate(dna_run, data / "a.fa", root / "pos.fa", shard=Shard(i, 2), steps=2)
        generate(dna_run, data / "b.fa", root / "other.fa", shard=Shard(i, 2), steps=2)
    return root


def _shard(folder: Path, name: str, i: int) -> Path:
    return folder / f"{name}.shard-{i:05d}-of-00002.fa"


def _fasta_shard_case(case: str, src: Path, dst: Path) -> tuple[list[Path], Path, str]:
    """Shards to merge (copied from ``src`` into ``dst`` and damaged), the file the error
    names, and what it says."""
    for name in ("pos", "other"):
        for i in range(2):
            for p in (_shard(src, name, i), Path(f"{_shard(src, name, i)}.json")):
                shutil.copy(p, dst / p.name)
    s0, s1 = _shard(dst, "pos", 0), _shard(dst, "pos", 1)
    if case == "truncated":
        s1.write_bytes(s1.read_bytes()[:-37])
        return [s0, s1], s1, "does not match its record"
    if case == "truncated, record removed":
        s1.write_bytes(s1.read_bytes()[:-37])
        Path(f"{s1}.json").unlink()
        return [s0, s1], s1, "not a complete shard"
    if case == "shard of another input":
        shutil.copy(_shard(dst, "other", 1), s1)
        shutil.copy(f"{_shard(dst, 'other', 1)}.json", f"{s1}.json")
        return [s0, s1], s1, "source differs"
    if case == "shard 0 renamed as shard 1":
        shutil.copy(s0, s1)
        shutil.copy(f"{s0}.json", f"{s1}.json")
        return [s0, s1], s1, "name says 1 of 2"
    if case == "shard 0 copied over shard 1 only":
        shutil.copy(s0, s1)
        return [s0, s1], s1, "does not match its record"
    if case == "sequence fused to a header":
        text = s1.read_bytes()
        s1.write_bytes(text.replace(b"\n>", b">", 1))
        return [s0, s1], s1, "does not match"
    if case == "zero-byte shard":
        s1.write_bytes(b"")
        return [s0, s1], s1, "empty shard file"
    if case == "missing shard, named beside the shards given":
        elsewhere = dst / "elsewhere"
        elsewhere.mkdir()
        moved = shutil.move(s0, elsewhere / s0.name)
        return [Path(moved)], elsewhere / s1.name, "missing shard 1"
    if case == "HDF5 among FASTA shards":
        s1.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
        return [s0, s1], s1, "is HDF5"
    raise AssertionError(case)


FASTA_SHARD_CASES = ["truncated", "truncated, record removed", "shard of another input",
                     "shard 0 renamed as shard 1", "shard 0 copied over shard 1 only",
                     "sequence fused to a header", "zero-byte shard",
                     "missing shard, named beside the shards given", "HDF5 among FASTA shards"]


@pytest.mark.parametrize("case", FASTA_SHARD_CASES)
def test_merge_verifies_fasta_shards(case, fasta_shards, tmp_path, capsys):
    shards, named, says = _fasta_shard_case(case, fasta_shards, tmp_path)
    out = tmp_path / "merged" / "pos.fa"
    out.parent.mkdir()
    fails(capsys, 2, "merge", "-o", out, *shards, names=named, says=says)
    assert not out.exists()
    no_temp_files(tmp_path)


def test_merge_of_good_fasta_shards_counts_records(fasta_shards, tmp_path, capsys):
    out = tmp_path / "pos.fa"
    code, err = cli(capsys, "merge", "-o", out, _shard(fasta_shards, "pos", 0),
                    _shard(fasta_shards, "pos", 1))
    assert code == 0, err
    assert "merged 2 shards (128 rows)" in err
    assert out.read_text().count(">") == 128


# ------------------------------------------------- an output that is the input is refused
def _same_file_case(case: str, data: Path, dna_run: Path, tab_run: Path, tmp: Path):
    """(argv, the input that must survive)."""
    fa = shutil.copy(data / "a.fa", tmp / "in.fa")
    link = tmp / "link.fa"
    link.symlink_to(fa)
    if case == "encode, through a symlink":
        return ["encode", fa, "-o", link, "--length", "200"], fa
    if case == "encode, labels file":
        labels = tmp / "labels.tsv"
        labels.write_text("id\tlabel\n" + "".join(
            f"{line[1:].split()[0]}\tx\n" for line in Path(fa).read_text().splitlines()
            if line.startswith(">")))
        return ["encode", fa, "-o", labels, "--length", "200", "--labels", labels], labels
    if case == "embed, HDF5 input by another path":
        h5 = tmp / "in.h5"
        from diffaug_genomics.encode import encode_fasta

        encode_fasta(fa, h5, length=200, show_progress=False)
        (tmp / "sub").mkdir()
        return ["embed", dna_run, h5, "-o", tmp / "sub" / ".." / "in.h5"], h5
    if case == "embed, CSV input, hard link":
        csv_in = shutil.copy(data / "cells.csv", tmp / "cells.csv")
        os.link(csv_in, tmp / "cells-link.csv")
        return ["embed", tab_run, csv_in, "-o", tmp / "cells-link.csv"], csv_in
    if case == "embed, a file of the run directory":
        run = copy_run(dna_run, tmp / "run")
        return ["embed", run, fa, "-o", run / "encoder.pt"], run / "encoder.pt"
    if case == "generate, through a symlink":
        return ["generate", dna_run, fa, "-o", link], fa
    if case == "generate samples, tabular input":
        npy = tmp / "cells.npy"
        np.save(npy, np.zeros((4, 4), np.float32))
        return ["generate", tab_run, npy, "-o", npy], npy
    if case == "evaluate, report over the embeddings":
        emb = tmp / "emb.h5"
        from diffaug_genomics.embed import embed

        embed(dna_run, fa, emb)
        return ["evaluate", emb, "--protocol", "knn", "-o", emb], emb
    if case == "merge, output is a shard":
        shard = tmp / "pos.shard-00000-of-00001.fa"
        shard.write_text(">a\nACGT\n")
        return ["merge", "-o", shard, shard], shard
    raise AssertionError(case)


SAME_FILE_CASES = ["encode, through a symlink", "encode, labels file",
                   "embed, HDF5 input by another path", "embed, CSV input, hard link",
                   "embed, a file of the run directory", "generate, through a symlink",
                   "generate samples, tabular input", "evaluate, report over the embeddings",
                   "merge, output is a shard"]


@pytest.mark.parametrize("force", [False, True], ids=["", "--force"])
@pytest.mark.parametrize("case", SAME_FILE_CASES)
def test_output_that_is_the_input_is_refused(case, force, data, dna_run, tab_run, tmp_path,
                                             capsys):
    argv, keep = _same_file_case(case, data, dna_run, tab_run, tmp_path)
    before = digest(keep)
    fails(capsys, 2, *argv, *(["--force"] if force else []), says="the output is")
    assert digest(keep) == before
    no_temp_files(tmp_path)


# ------------------------------------------------------------------ stale and mismatched runs
def test_failed_fit_leaves_nothing_the_next_fit_reuses(data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()  # a directory that existed is kept, with what the failed fit left in it
    # a table fit that fails after preprocess.json (too few rows), then one on other data
    write_table(tmp_path / "tiny.csv", n=3, scale=1000.0)
    fails(capsys, 2, "fit", tmp_path / "tiny.csv", "-o", run, "--preset", "tiny",
          "--label-column", "cell_type", says="at least 4")
    assert (run / "preprocess.json").exists()
    code, err = cli(capsys, "fit", data / "cells.csv", "-o", run, "--preset", "tiny", *SETS,
                    "--label-column", "cell_type")
    assert code == 0, err
    state = json.loads((run / "preprocess.json").read_text())["state"]
    from diffaug_genomics.io.samples import ReadOptions
    from diffaug_genomics.io.tables import read_table

    x = read_table(data / "cells.csv", ReadOptions("cell_type")).values
    np.testing.assert_allclose(state["center"], x.mean(axis=0), rtol=1e-4, atol=1e-5)
    # a FASTA fit that fails after data.h5 (diverges), then --resume auto with other options
    dna = tmp_path / "dna"
    dna.mkdir()
    fails(capsys, 1, "fit", data / "short.fa", "-o", dna, "--preset", "tiny", *SETS,
          "--set", "loss.temperature=1.0e-45", says="loss became")
    assert (dna / "config.yaml").exists() and (dna / "data.h5").exists()
    code, err = cli(capsys, "fit", data / "a.fa", "-o", dna, "--preset", "tiny", *SETS,
                    "--resume", "auto")
    assert code == 0, err
    from diffaug_genomics.config import load_yaml
    from diffaug_genomics.io.h5 import load_rows

    assert load_yaml(dna / "config.yaml")["loss"]["temperature"] == 0.2
    assert len(load_rows(dna / "data.h5")[0]) == 128


RESUME_CASES = {
    "other rows, same count": ("dna", "b.fa"),
    "other row count": ("dna", "short.fa"),
    "table with a changed value": ("tab", "changed.csv"),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_refuses_a_changed_input(case, data, dna_run, tab_run, tmp_path, capsys):
    kind, name = RESUME_CASES[case]
    run = copy_run(dna_run if kind == "dna" else tab_run, tmp_path / "run")
    if name == "changed.csv":
        text = (data / "cells.csv").read_text().splitlines()
        text[5] = text[5].replace(",", ",1", 2)
        (tmp_path / name).write_text("\n".join(text) + "\n")
        source = tmp_path / name
    else:
        source = data / name
    config = (run / "config.yaml").read_text()
    fails(capsys, 2, "fit", source, "-o", run, "--resume", names=source,
          says="not the input this run was started on")
    assert (run / "config.yaml").read_text() == config


def test_resume_on_the_same_input_keeps_the_label_column(data, tab_run, tmp_path, capsys):
    run = copy_run(tab_run, tmp_path / "run")
    code, err = cli(capsys, "fit", data / "cells.csv", "-o", run, "--resume")  # no --label-column
    assert code == 0, err
    assert "stage 4/4" in err and "stage 5/4" not in err
    # the README's generate example: the run's label column is not a feature
    code, err = cli(capsys, "generate", run, data / "cells.csv", "-o", tmp_path / "pos.npy",
                    "--per-sequence", "2")
    assert code == 0, err
    assert np.load(tmp_path / "pos.npy").shape == (120, 4)


def _damage(path: Path, how: str) -> None:
    if how == "zero bytes":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "foreign file":
        path.write_text("not a checkpoint\n")
    elif how == "another format":
        import torch

        torch.save({"format": "something/else"}, path)
    elif how == "its format tag, nothing else":
        import torch

        saved = torch.load(path, weights_only=True)  # the right tag and hash, no weights
        torch.save({"format": saved["format"], "config_hash": saved["config_hash"]}, path)
    else:
        raise AssertionError(how)


CHECKPOINT_CASES = [(f, how) for f in ("checkpoints/latest.pt", "encoder.pt", "generator.pt")
                    for how in ("zero bytes", "truncated", "foreign file", "another format",
                                "its format tag, nothing else")]


@pytest.mark.parametrize("name,how", CHECKPOINT_CASES)
def test_unreadable_checkpoints_exit_2_naming_the_file(name, how, data, dna_run, tmp_path, capsys):
    run = copy_run(dna_run, tmp_path / "run")
    _damage(run / name, how)
    if name == "checkpoints/latest.pt":
        (run / "encoder.pt").unlink()  # an unfinished run, requeued
        argv = ["fit", data / "a.fa", "-o", run, "--resume", "auto"]
    elif name == "encoder.pt":
        argv = ["embed", run, data / "a.fa", "-o", tmp_path / "e.h5"]
    else:
        argv = ["generate", run, data / "a.fa", "-o", tmp_path / "p.fa"]
    fails(capsys, 2, *argv, names=run / name)
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "p.fa").exists()


def test_a_damaged_neighbour_cache_is_recomputed(data, tmp_path, capsys):
    from diffaug_genomics.positives.neighbour_search import load_neighbours, save_neighbours

    path = tmp_path / "neighbours.npz"
    save_neighbours(path, np.array([[1], [7]]), {"n": 2})  # points past the 2 rows
    assert load_neighbours(path, {"n": 2}) is None
    save_neighbours(path, np.array([[1], [0]]), {"n": 2})
    assert load_neighbours(path, {"n": 2}).tolist() == [[1], [0]]


def test_resume_after_kill_during_checkpoint_write_uses_the_last_good_one(data, dna_run,
                                                                         tmp_path, capsys):
    run = copy_run(dna_run, tmp_path / "run")
    (run / "encoder.pt").unlink()
    stray = run / "checkpoints" / ".latest.pt.abc123.tmp"  # what kill -9 mid-write leaves
    stray.write_bytes((run / "checkpoints" / "latest.pt").read_bytes()[:1000])
    code, err = cli(capsys, "fit", data / "a.fa", "-o", run, "--resume", "auto")
    assert code == 0, err
    assert not stray.exists() and (run / "encoder.pt").exists()


FOREIGN_RUN_CASES = ["image encoder in a tabular run", "preprocess.json with a short list",
                     "generator.pt of another run"]


@pytest.mark.parametrize("case", FOREIGN_RUN_CASES)
def test_foreign_run_files_exit_2_naming_the_file(case, data, dna_run, tab_run, tmp_path,
                                                  capsys):
    import torch

    run = copy_run(tab_run, tmp_path / "run")
    if case == "image encoder in a tabular run":
        saved = torch.load(run / "encoder.pt", weights_only=True)
        saved.update(modality="image", sample_shape=[1, 8, 8])
        torch.save(saved, run / "encoder.pt")
        named = run / "encoder.pt"
    elif case == "preprocess.json with a short list":
        record = json.loads((run / "preprocess.json").read_text())
        record["state"]["center"] = record["state"]["center"][:2]
        (run / "preprocess.json").write_text(json.dumps(record))
        named = run / "preprocess.json"
    else:
        shutil.copy(dna_run / "generator.pt", run / "generator.pt")
        named = run / "generator.pt"
    fails(capsys, 2, "generate", run, data / "cells.csv", "-o", tmp_path / "p.npy", names=named)
    assert not (tmp_path / "p.npy").exists()


# ------------------------------------------------------------- values, ranges and resources
def _outside(bound: Bound, key: str) -> list:
    """Values just outside ``bound`` (ints for int keys), NaN and infinity for floats."""
    from diffaug_genomics.config import Config

    section, _, name = key.rpartition(".")
    obj = Config()
    for part in section.split(".") if section else []:
        obj = getattr(obj, part)
    is_int = isinstance(getattr(obj, name), int) or (
        isinstance(getattr(obj, name), list) and isinstance(getattr(obj, name)[0], int))
    values = []
    if bound.lo is not None:
        values.append(bound.lo if bound.lo_open else (bound.lo - 1 if is_int else bound.lo - 0.5))
    if bound.hi is not None:
        values.append(bound.hi if bound.hi_open else (bound.hi + 1 if is_int else bound.hi + 0.5))
    if not is_int:
        values += [".nan", ".inf"]
    return values


def test_every_numeric_config_key_has_a_declared_range():
    assert set(numeric_keys()) == set(BOUNDS), (
        f"numeric keys without a range in config.BOUNDS: {set(numeric_keys()) - set(BOUNDS)}; "
        f"ranges of keys that do not exist: {set(BOUNDS) - set(numeric_keys())}")


RANGE_CASES = [(key, value) for key in numeric_keys()  # a key without a range: no case here,
               for value in _outside(BOUNDS.get(key, Bound()), key)]  # the test above fails


@pytest.mark.parametrize("key,value", RANGE_CASES, ids=[f"{k}={v}" for k, v in RANGE_CASES])
def test_out_of_range_config_values_are_refused(key, value):
    text = f"[{value}, {value}]" if key in PAIRS else (
        f"[{value}]" if key == "generator.channels" else str(value))
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        resolve_config("tiny", overrides=[f"{key}={text}"])


@pytest.mark.parametrize("family", ["dna", "image", "tabular"])
@pytest.mark.parametrize("preset", ["tiny", "default", "paper"])
def test_defaults_and_presets_are_in_range(preset, family):
    resolve_config(preset, modality=family, preset_family=lambda m: m if m != "dna" else "dna")


def test_an_output_in_a_run_directory_may_be_rewritten(data, dna_run, tmp_path, capsys):
    run = copy_run(dna_run, tmp_path / "run")
    for _ in range(2):
        code, err = cli(capsys, "embed", run, data / "a.fa", "-o", run / "emb.h5", "--force")
        assert code == 0, err


@pytest.mark.parametrize("setting", ["loss.temperature=0", "optim.lr=-1e-3",
                                     "optim.weight_decay=-1", "generator.ema_decay=2"])
def test_range_errors_come_before_any_work(setting, data, tmp_path, capsys):
    fails(capsys, 2, "fit", data / "a.fa", "-o", tmp_path / "run", "--preset", "tiny",
          "--set", setting, says=setting.split("=")[0])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("phase", ["warmup", "generator"])
def test_a_diverging_loss_stops_fit_with_exit_1_naming_the_step(phase, data, tmp_path, capsys,
                                                                monkeypatch):
    setting = ["--set", "loss.temperature=1.0e-45"]  # logits overflow float32: NaN at step 1
    if phase == "generator":  # the denoiser's loss turns NaN at its first step
        from diffaug_genomics.diffusion import Diffusion

        loss = Diffusion.loss
        monkeypatch.setattr(Diffusion, "loss", lambda *a, **k: loss(*a, **k) * float("nan"))
        setting = []
    run = tmp_path / "run"
    fails(capsys, 1, "fit", data / "a.fa", "-o", run, "--preset", "tiny", *SETS, *setting,
          says=f"{phase} loss became nan at step 1")
    assert not (run / "encoder.pt").exists()
    assert (run / "checkpoints" / "latest.pt").exists() == (phase == "generator")


@pytest.mark.parametrize("which", ["encoder.pt", "generator.pt"])
def test_nothing_exports_non_finite_numbers(which, data, dna_run, tmp_path, capsys):
    import torch

    run = copy_run(dna_run, tmp_path / "run")
    saved = torch.load(run / which, weights_only=True)
    key = "encoder" if which == "encoder.pt" else "denoiser"
    for value in saved[key].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(saved, run / which)
    cmd = "embed" if which == "encoder.pt" else "generate"
    out = tmp_path / ("e.h5" if cmd == "embed" else "p.fa")
    fails(capsys, 1, cmd, run, data / "a.fa", "-o", out, says="NaN or infinite")
    assert not out.exists()
    no_temp_files(tmp_path)


BAD_NUMBER_CASES = {
    "1e300 in a CSV": ("big.csv", "beyond float32"),
    "1e300 in a .npy": ("big.npy", "beyond float32"),
    "complex .npy": ("complex.npy", "complex"),
    "complex dense .h5ad": ("complex.h5ad", "complex"),
    "FASTA given to a tabular run": ("seqs.fa", "is FASTA (dna)"),
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBER_CASES))
def test_numbers_beyond_float32_and_complex_arrays_are_refused(case, data, tab_run, tmp_path,
                                                               capsys):
    name, says = BAD_NUMBER_CASES[case]
    path = tmp_path / name
    if name == "big.csv":
        text = (data / "cells.csv").read_text().splitlines()
        cells = text[3].split(",")
        cells[2] = "1e300"
        text[3] = ",".join(cells)
        path.write_text("\n".join(text) + "\n")
    elif name == "big.npy":
        np.save(path, np.full((8, 4), 1e300))
    elif name == "complex.npy":
        np.save(path, np.ones((8, 4), np.complex64) * 1j)
    elif name == "complex.h5ad":
        with h5py.File(path, "w") as f:
            f["X"] = np.ones((8, 4), np.complex64)
            f.create_group("obs")
    else:
        shutil.copy(data / "a.fa", path)
    fails(capsys, 2, "embed", tab_run, path, "-o", tmp_path / "e.h5", names=path, says=says)


# -------------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only); skipped with the reason when it cannot be mounted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or "mount failed").splitlines()[0]
        print(f"SKIP disk-full tests: cannot mount a tmpfs ({reason})")
        pytest.skip(f"cannot mount a tmpfs for the disk-full test: {reason}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(disk: Path, leave_kb: int) -> None:
    """Fill the disk, then free ``leave_kb`` KiB again."""
    fill = disk / "fill"
    fill.unlink(missing_ok=True)
    with open(fill, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(bytes(4096))
        except OSError:
            pass
    os.truncate(fill, max(0, fill.stat().st_size - 1024 * leave_kb))


DISK_CASES = ["encode", "embed", "embed .h5ad", "generate", "fit"]


@pytest.mark.parametrize("case", DISK_CASES)
def test_full_disk_is_one_line_and_leaves_outputs_intact(case, data, dna_run, tab_run, small_disk,
                                                         capsys):
    prior = small_disk / "previous"
    prior.write_bytes(b"previous output\n")
    if case == "encode":
        out = small_disk / "x.h5"
        argv = ["encode", EXAMPLE, "-o", out, "--length", "200"]
    elif case == "embed":
        out = small_disk / "e.h5"
        argv = ["embed", dna_run, data / "a.fa", "-o", out]
    elif case == "embed .h5ad":
        out = small_disk / "e.h5ad"
        argv = ["embed", tab_run, data / "cells.csv", "-o", out]
    elif case == "generate":
        out = small_disk / "p.fa"
        argv = ["generate", dna_run, EXAMPLE, "-o", out, "-k", "4", "--steps", "2"]
    else:
        out = small_disk / "run"
        argv = ["fit", data / "a.fa", "-o", out, "--preset", "tiny", *SETS]
    faults = 0
    for leave_kb in (0, 8, 40):
        _fill(small_disk, leave_kb)
        code, err = cli(capsys, *argv)
        if code == 0:  # it fitted: no fault to see at this size
            shutil.rmtree(out, ignore_errors=True) if case == "fit" else out.unlink()
            continue
        faults += 1
        errors = [line for line in err.splitlines() if line.startswith("diffaug: error")]
        assert code == 1 and "Traceback" not in err, err
        assert len(errors) == 1 and "no space left on device writing" in errors[0], err
        assert prior.read_bytes() == b"previous output\n"
        no_temp_files(small_disk)
        assert not list(small_disk.glob(".*.lock")), "a failed fit left its lock"
        if case != "fit":
            assert not out.exists()
        shutil.rmtree(out, ignore_errors=True) if case == "fit" else None
    assert faults, "the disk never filled up"


# ---------------------------------------------------------------------------------- signals
def _wait_for(predicate, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


SIGNAL_CASES = [(cmd, sig) for cmd in ("encode", "generate") for sig in ("SIGTERM", "SIGHUP")]


@pytest.mark.parametrize("cmd,sig", SIGNAL_CASES)
def test_sigterm_and_sighup_mid_write_leave_no_temp_file(cmd, sig, data, dna_run, tmp_path):
    out = tmp_path / ("out.h5" if cmd != "generate" else "out.fa")
    out.write_bytes(b"the previous output\n")
    argv = {"encode": ["encode", "-", "-o", out, "--length", "200"],
            "generate": ["generate", dna_run, "-", "-o", out, "--steps", "2"]}[cmd]
    env = {**os.environ, "DIFFAUG_NO_BAR": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*DIFFAUG, *map(str, argv), "--force"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    records = EXAMPLE.read_bytes()
    try:
        proc.stdin.write(records)  # the input keeps coming: the command is mid-run
        proc.stdin.flush()
        # encode and generate stream into their temporary file as the input comes
        assert _wait_for(lambda: any(tmp_path.glob(".out.*.tmp"))), "no temporary file"
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert b"Traceback" not in err, err.decode()
    assert out.read_bytes() == b"the previous output\n"
    no_temp_files(tmp_path)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("cmd", ["embed", "embed .h5ad", "generate samples"])
def test_sigterm_and_sighup_mid_write_of_embed_and_samples(cmd, sig, data, dna_run, tab_run,
                                                           tmp_path, capsys, monkeypatch):
    """embed (and generate for tables) write at the end: the signal arrives while the HDF5 /
    .npy file is being written (half of it is on disk)."""
    import diffaug_genomics.io.h5 as embed_mod
    import diffaug_genomics.io.h5ad_back as h5ad_mod

    def interrupted(write):
        def wrapper(path, *args, **kwargs):
            write(path, *args, **kwargs)
            if hasattr(path, "flush"):  # np.save writes into an open file
                path.flush()
                path = path.name
            assert Path(path).stat().st_size > 0
            os.kill(os.getpid(), getattr(signal, sig))
            time.sleep(2)
            raise AssertionError("the signal did not interrupt the write")
        return wrapper

    if cmd == "embed":
        out = tmp_path / "out.h5"
        monkeypatch.setattr(embed_mod, "write_embeddings", interrupted(embed_mod.write_embeddings))
        argv = ["embed", dna_run, data / "a.fa", "-o", out]
    elif cmd == "embed .h5ad":
        out = tmp_path / "out.h5ad"
        monkeypatch.setattr(h5ad_mod, "write_back", interrupted(h5ad_mod.write_back))
        h5ad = tmp_path / "cells.h5ad"
        with h5py.File(h5ad, "w") as f:
            f["X"] = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
            f.create_group("obs")
        argv = ["embed", tab_run, h5ad, "-o", out]
    else:
        out = tmp_path / "out.npy"
        monkeypatch.setattr(np, "save", interrupted(np.save))
        argv = ["generate", tab_run, data / "cells.csv", "-o", out]
    out.write_bytes(b"the previous output\n")
    code, err = cli(capsys, *argv, "--force")
    assert code == 128 + getattr(signal, sig), err
    assert f"terminated by {sig}" in err and "Traceback" not in err
    assert out.read_bytes() == b"the previous output\n"
    no_temp_files(tmp_path)


def test_the_atomic_writer_removes_its_file_on_sigterm_in_process(tmp_path):
    from diffaug_genomics.errors import Terminated
    from diffaug_genomics.io.atomic import atomic_output

    target = tmp_path / "x.txt"
    with pytest.raises(Terminated), atomic_output(target) as tmp:
        tmp.write_text("partial")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert not target.exists()
    no_temp_files(tmp_path)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --------------------------------------------- errors that name the right thing, one line each
def _wrong_name_case(case: str, data: Path, dna_run: Path, tmp: Path):
    """(argv, the file the error must name, what it says)."""
    from diffaug_genomics.embed import embed

    emb = tmp / "emb.h5"
    embed(dna_run, data / "a.fa", emb)
    labels = tmp / "labels.tsv"
    with h5py.File(emb, "r") as f:
        ids = [s.decode() for s in f["ids"][()]]
    labels.write_text("id\tlabel\n" + "".join(f"{i}\t{'ab'[n % 2]}\n" for n, i in enumerate(ids)))
    if case == "1-D embeddings":
        with h5py.File(emb, "a") as f:
            del f["embeddings"]
            f["embeddings"] = np.zeros(len(ids), np.float32)
        return ["evaluate", emb, "--labels", labels], emb, "expected (N, D)"
    if case == "fewer ids than embeddings":
        with h5py.File(emb, "a") as f:
            del f["ids"]
            f["ids"] = np.array([i.encode() for i in ids[:-3]])
        return ["evaluate", emb, "--labels", labels], emb, "ids for"
    if case == "strings in /embeddings":
        with h5py.File(emb, "a") as f:
            del f["embeddings"]
            f["embeddings"] = np.array([[b"x"] * 4] * len(ids))
        return ["evaluate", emb, "--labels", labels], emb, "expected real numbers"
    if case == "NaN embeddings":
        with h5py.File(emb, "a") as f:
            f["embeddings"][3, 1] = np.nan
        return ["evaluate", emb, "--labels", labels], emb, "row 3"
    if case == "embed -o -":
        return ["embed", dna_run, data / "a.fa", "-o", "-"], "give -o FILE", "standard output"
    if case == "encode -o -":
        return ["encode", data / "a.fa", "-o", "-", "--length", "200"], "give -o FILE", "standard"
    if case == "option out of range":
        return ["embed", dna_run, data / "a.fa", "-o", tmp / "e.h5", "--batch-size", "0"], \
            "--batch-size", "greater than or equal to 1"
    if case == "missing argument":
        return ["embed", dna_run], "diffaug embed", "missing argument"
    if case in ("empty .npy", "truncated .npy"):
        npy = tmp / "x.npy"
        np.save(npy, np.ones((8, 4), np.float32))
        npy.write_bytes(b"" if case == "empty .npy" else npy.read_bytes()[:100])
        return ["evaluate", npy], npy, "not a readable .npy"
    if case == "truncated embeddings":
        emb.write_bytes(emb.read_bytes()[:2000])
        return ["evaluate", emb, "--labels", labels], emb, ""
    if case == "FASTA to a tabular fit":
        return ["fit", data / "a.fa", "-o", tmp / "run", "--modality", "tabular"], \
            data / "a.fa", "is DNA"
    raise AssertionError(case)


WRONG_NAME_CASES = ["1-D embeddings", "fewer ids than embeddings", "strings in /embeddings",
                    "NaN embeddings", "embed -o -", "encode -o -", "option out of range",
                    "missing argument", "FASTA to a tabular fit", "empty .npy", "truncated .npy",
                    "truncated embeddings"]


@pytest.mark.parametrize("case", WRONG_NAME_CASES)
def test_errors_name_the_right_file_in_one_line(case, data, dna_run, tmp_path, capsys,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, named, says = _wrong_name_case(case, data, dna_run, tmp_path)
    fails(capsys, 2, *argv, names=named, says=says)
    assert not (tmp_path / "-").exists()


def test_finite_loss_guard_and_bounds_directly():
    from diffaug_genomics.guards import NonFiniteError, check_finite_loss, require_finite

    check_finite_loss(1.5, "warmup", 3)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(NonFiniteError, match="encoder loss became .* at step 7"):
            check_finite_loss(bad, "encoder", 7)
    with pytest.raises(NonFiniteError, match="embeddings"):
        require_finite(np.array([1.0, np.nan]), "embeddings")
    assert Bound(0.0, 1.0, hi_open=True).contains(0.0)
    assert not Bound(0.0, 1.0, hi_open=True).contains(1.0)
    assert not Bound(0.0, lo_open=True).contains(0.0)
