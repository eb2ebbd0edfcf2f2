"""End to end through the real command line: fit -> embed -> generate on the bundled example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import MICRO

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {**os.environ, "DIFFAUG_NO_BAR": "1"}


def run(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*DIFFAUG, *map(str, args)], capture_output=True, input=input, env=ENV,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr.decode()}")
    return proc


def fasta_records(text: str) -> list[tuple[str, str]]:
    records, header = [], None
    for line in text.splitlines():
        if line.startswith(">"):
            header = line[1:]
        elif header is not None:
            records.append((header, line))
            header = None
    return records


@pytest.fixture(scope="module")
def tiny_run(example_fasta, tmp_path_factory) -> Path:
    """`diffaug fit --preset tiny` on the 500 bundled DHS sequences, straight from FASTA."""
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    proc = run("fit", example_fasta, "-o", run_dir, "--preset", "tiny", "--seed", "0")
    assert "fit finished" in proc.stderr.decode()
    return run_dir


def test_fit_writes_a_complete_run_directory(tiny_run):
    for name in ("config.yaml", "data.h5", "metrics.csv", "log.txt", "encoder.pt",
                 "generator.pt", "checkpoints/latest.pt", "checkpoints/round1.pt"):
        assert (tiny_run / name).exists(), name
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["seed"] == 0 and cfg["world_size"] == 1 and cfg["preset"] == "tiny"
    assert cfg["global_batch_size"] == cfg["optim"]["batch_size"]
    assert cfg["versions"]["torch"]
    assert "warmup" in (tiny_run / "log.txt").read_text()


def test_embed_keeps_order_ids_and_labels(tiny_run, example_fasta, example_labels, tmp_path):
    h5 = tmp_path / "example.h5"
    run("encode", example_fasta, "-o", h5, "--length", "200", "--labels", example_labels)
    out = tmp_path / "emb.h5"
    run("embed", tiny_run, h5, "-o", out, "--batch-size", "37")  # 500 is not a multiple of 37
    with h5py.File(out) as f:
        emb, ids = f["embeddings"][()], [s.decode() for s in f["ids"][()]]
        labels = [s.decode() for s in f["labels"][()]]
        assert f.attrs["schema"] == "diffaug-genomics/embeddings/1"
        assert f.attrs["config_hash"]
    expected = [h.split()[0] for h, _ in fasta_records(example_fasta.read_text())]
    assert ids == expected
    assert emb.shape == (500, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert len(set(labels)) == 4
    # FASTA input straight from stdin gives the same embeddings, and batch size does not matter
    out2 = tmp_path / "emb2.h5"
    run("embed", tiny_run, "-", "-o", out2, "--batch-size", "512", input=example_fasta.read_bytes())
    with h5py.File(out2) as f:
        np.testing.assert_allclose(f["embeddings"][()], emb, rtol=1e-4, atol=1e-5)


def test_generate_to_stdout_in_order_with_headers(tiny_run, example_fasta):
    head = "".join(example_fasta.read_text().splitlines(keepends=True)[:20])  # 10 records
    proc = run("generate", tiny_run, "-", "-o", "-", "--per-sequence", "3", "--steps", "4",
               "--strength", "0.5", input=head.encode())
    records = fasta_records(proc.stdout.decode())
    sources = fasta_records(head)
    assert len(records) == 30
    for i, (header, seq) in enumerate(records):
        sid = sources[i // 3][0].split()[0]
        assert header == f"{sid}|pos{i % 3} source={sid}:0-200 steps=4 strength=0.5"
        assert len(seq) == len(sources[i // 3][1]) and set(seq) <= set("ACGTN")
    assert "mean identity to source" in proc.stderr.decode()
    # positives are close to their source, not copies of it
    ident = [np.mean([a == b for a, b in zip(seq, sources[i // 3][1], strict=True)])
             for i, (_, seq) in enumerate(records)]
    assert 0.3 < np.mean(ident) < 0.999
    # the seed fixes sampling
    again = run("generate", tiny_run, "-", "-o", "-", "--per-sequence", "3", "--steps", "4",
                "--strength", "0.5", input=head.encode())
    assert again.stdout == proc.stdout


def test_generate_to_file_is_atomic_and_refuses_overwrite(tiny_run, example_fasta, tmp_path):
    out = tmp_path / "pos.fa"
    out.write_text("keep me\n")
    proc = run("generate", tiny_run, example_fasta, "-o", out, check=False)
    assert proc.returncode == 2 and b"--force" in proc.stderr
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("args, needle", [
    (["--set", "encoder.widht=3"], "encoder.widht"),
    (["--set", "encoder.width=abc"], "encoder.width"),
    (["--preset", "huge"], "huge"),
    (["--augment", "magic"], "augment"),
])
def test_fit_rejects_bad_config_before_any_work(example_fasta, tmp_path, args, needle):
    run_dir = tmp_path / "run"
    proc = run("fit", example_fasta, "-o", run_dir, *args, check=False)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_embed_and_generate_refuse_unfinished_runs(tmp_path, example_fasta):
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    for cmd in (["embed", unfinished, example_fasta, "-o", tmp_path / "e.h5"],
                ["generate", unfinished, example_fasta, "-o", tmp_path / "g.fa"]):
        proc = run(*cmd, check=False)
        assert proc.returncode == 2
        assert b"failed or was killed before its first checkpoint" in proc.stderr
        assert b"needs a finished run" in proc.stderr and b"Traceback" not in proc.stderr
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "g.fa").exists()


def test_fit_resume_and_baseline_without_generator(example_fasta, tmp_path):
    run_dir = tmp_path / "knn"
    micro = [a for o in MICRO for a in ("--set", o)]
    run("fit", example_fasta, "-o", run_dir, "--preset", "tiny", *micro, "--augment", "knn-mixup")
    proc = run("fit", example_fasta, "-o", run_dir, "--preset", "tiny", check=False)
    assert proc.returncode == 2 and b"--resume" in proc.stderr  # an existing run is never clobbered
    proc = run("generate", run_dir, example_fasta, "-o", tmp_path / "g.fa", check=False)
    assert proc.returncode == 2 and b"no generator" in proc.stderr
    proc = run("fit", example_fasta, "-o", run_dir, "--resume")  # finished: nothing left to do
    assert proc.returncode == 0


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_again(example_fasta, tmp_path):
    run_dir = tmp_path / "killed"
    run_dir.mkdir()  # what a job killed while encoding its input leaves behind
    micro = [a for o in MICRO + ["schedule.rounds=0"] for a in ("--set", o)]
    proc = run("fit", example_fasta, "-o", run_dir, "--preset", "tiny", *micro, "--resume")
    assert b"starting the run from the beginning" in proc.stderr
    assert (run_dir / "encoder.pt").exists()
