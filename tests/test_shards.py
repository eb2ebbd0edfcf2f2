"""Sharded embed / generate (--shard i/N, SLURM job arrays) and `diffaug merge`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import MICRO

from diffaug_genomics.embed import embed
from diffaug_genomics.errors import InputError
from diffaug_genomics.generate import generate
from diffaug_genomics.merge import merge
from diffaug_genomics.shards import Shard, shard_path

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
ENV["DIFFAUG_NO_BAR"] = "1"


@pytest.fixture(scope="module")
def run_and_data(example_fasta, tmp_path_factory) -> tuple[Path, Path]:
    """A finished MICRO diffaug run (one round) and the example as HDF5 (500 rows)."""
    from diffaug_genomics.encode import encode_fasta
    from diffaug_genomics.fit import fit

    tmp = tmp_path_factory.mktemp("shards")
    data = tmp / "example.h5"
    encode_fasta(example_fasta, data, length=200)
    fit(data, tmp / "run", preset="tiny", overrides=[*MICRO, "schedule.rounds=1"])
    return tmp / "run", data


def read(path: Path) -> tuple[np.ndarray, list[str], list[str] | None]:
    with h5py.File(path) as f:
        labels = [s.decode() for s in f["labels"][()]] if "labels" in f else None
        return f["embeddings"][()], [s.decode() for s in f["ids"][()]], labels


def test_three_shards_then_merge_equal_the_unsharded_embeddings(run_and_data, tmp_path):
    run, data = run_and_data
    embed(run, data, tmp_path / "full.h5")
    for i in range(3):
        summary = embed(run, data, tmp_path / "emb.h5", shard=Shard(i, 3), batch_size=64)
        assert summary.output == tmp_path / f"emb.shard-0000{i}-of-00003.h5"
        assert summary.n in (166, 167)
    assert not (tmp_path / "emb.h5").exists()
    assert merge(tmp_path / "emb.h5").rows == 500
    full, merged = read(tmp_path / "full.h5"), read(tmp_path / "emb.h5")
    assert merged[1] == full[1] and merged[2] == full[2]  # ids (and labels) in input order
    # every row is embedded alone in eval mode: batching does not change the values
    np.testing.assert_allclose(merged[0], full[0], rtol=1e-5, atol=1e-6)
    with h5py.File(tmp_path / "emb.h5") as f:
        assert "shard_index" not in f.attrs and f.attrs["merged_from"] == 3


def test_a_missing_shard_is_an_error_naming_it(run_and_data, tmp_path):
    run, data = run_and_data
    for i in (0, 2):
        embed(run, data, tmp_path / "emb.h5", shard=Shard(i, 3))
    proc = subprocess.run([*DIFFAUG, "merge", "-o", str(tmp_path / "emb.h5")], env=ENV,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "missing shard 1 of 3" in err and "emb.shard-00001-of-00003.h5" in err
    assert not (tmp_path / "emb.h5").exists()


def test_duplicated_or_foreign_shards_are_refused(run_and_data, tmp_path):
    run, data = run_and_data
    paths = [embed(run, data, tmp_path / "e.h5", shard=Shard(i, 2)).output for i in range(2)]
    with pytest.raises(InputError, match="shard 0 of 2 is given twice"):
        merge(tmp_path / "m.h5", [paths[0], paths[0], paths[1]])
    embed(run, data, tmp_path / "e.h5", shard=Shard(0, 3))  # a stale shard of another count
    with pytest.raises(InputError, match="different counts"):
        merge(tmp_path / "e.h5")
    with pytest.raises(InputError, match="not a shard"):
        merge(tmp_path / "m.h5", [paths[0], embed(run, data, tmp_path / "whole.h5").output])


def test_a_complete_shard_is_skipped_and_a_foreign_one_kept(run_and_data, tmp_path):
    run, data = run_and_data
    out = tmp_path / "e.h5"
    first = embed(run, data, out, shard=Shard(1, 2))
    stamp = first.output.stat().st_mtime_ns
    again = embed(run, data, out, shard=Shard(1, 2))
    assert again.skipped and "complete already" in again.line()
    assert first.output.stat().st_mtime_ns == stamp
    with h5py.File(first.output, "a") as f:  # as if made from another input
        f.attrs["source"] = "other.h5"
    with pytest.raises(InputError, match="--force"):
        embed(run, data, out, shard=Shard(1, 2))
    assert not embed(run, data, out, shard=Shard(1, 2), force=True).skipped


def test_generate_shards_from_fasta_merge_in_input_order(run_and_data, example_fasta, tmp_path):
    run, _ = run_and_data
    head = tmp_path / "head.fa"
    head.write_text("".join(example_fasta.read_text().splitlines(keepends=True)[:40]))  # 20
    generate(run, head, tmp_path / "all.fa", per_sequence=2, steps=2)
    for i in range(3):
        generate(run, head, tmp_path / "pos.fa", per_sequence=2, steps=2, shard=Shard(i, 3))
    assert generate(run, head, tmp_path / "pos.fa", shard=Shard(1, 3)).skipped
    merge(tmp_path / "pos.fa")
    headers = [line for line in (tmp_path / "pos.fa").read_text().splitlines() if line[0] == ">"]
    expected = [line for line in (tmp_path / "all.fa").read_text().splitlines() if line[0] == ">"]
    assert headers == expected and len(headers) == 40
    with pytest.raises(InputError, match="not stdin"):
        generate(run, "-", tmp_path / "x.fa", shard=Shard(0, 2))


def test_cli_shard_defaults_to_the_slurm_array_task(run_and_data, tmp_path):
    run, data = run_and_data
    env = {**ENV, "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4",
           "SLURM_ARRAY_TASK_COUNT": "2"}
    proc = subprocess.run([*DIFFAUG, "embed", str(run), str(data), "-o", str(tmp_path / "e.h5")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "e.shard-00001-of-00002.h5").exists()
    proc = subprocess.run([*DIFFAUG, "embed", str(run), str(data), "-o", str(tmp_path / "e.h5"),
                           "--shard", "2/2"], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2 and "--shard 2/2" in proc.stderr


def test_shard_rows_and_names():
    assert [Shard(i, 3).rows(10) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [Shard(i, 4).rows(2) for i in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert Shard.parse(" 2 / 3 ") == Shard(2, 3)
    assert shard_path("out/emb.h5", 2, 3) == Path("out/emb.shard-00002-of-00003.h5")
    assert shard_path("pos", 0, 12) == Path("pos.shard-00000-of-00012")
    for bad in ("3", "1/0", "-1/2", "a/b"):
        with pytest.raises(InputError):
            Shard.parse(bad)
