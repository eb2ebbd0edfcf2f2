"""The generated sbatch scripts, run for real on a one-node SLURM cluster (``make test-slurm``).

The cluster comes from :mod:`harness` (Debian packages, installed when missing; when they cannot
be installed every test is skipped with a ``SKIP:`` line). The node has no GPU, so the scripts
are generated with ``--gpus-per-node 0 --tasks-per-node 2``: two gloo ranks per node, through
exactly the srun + torchrun lines a GPU user gets.

Not collected by ``make test`` (the file name does not start with ``test_``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS), str(Path(__file__).resolve().parent)]

import write_audit  # noqa: E402
from conftest import MICRO  # noqa: E402
from harness import Cluster, Unavailable  # noqa: E402

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
MICRO_ARGS = [a for o in MICRO for a in ("--set", o)]
RANKS = ["--set", "optim.batch_size=16", "--set", "generator.batch_size=16"]
FIT_RESOURCES = ["--nodes", "1", "--gpus-per-node", "0", "--tasks-per-node", "2",
                 "--time", "00:10:00"]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="diffaug-slurm-", dir="/tmp"))
    c = Cluster(root)
    try:
        seconds = c.up()
    except Unavailable as exc:
        c.down()
        shutil.rmtree(root, ignore_errors=True)
        print(f"\nSKIP: SLURM tests: {exc}", file=sys.__stderr__, flush=True)
        pytest.skip(f"SKIP: SLURM tests: {exc}")
    print(f"\nSLURM node idle {seconds:.1f} s after start ({root})", file=sys.__stderr__)
    yield c
    print(f"\nSLURM down in {c.down():.1f} s", file=sys.__stderr__)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def work(tmp_path_factory, example_fasta) -> Path:
    from diffaug_genomics.encode import encode_fasta

    work = tmp_path_factory.mktemp("slurm-jobs")
    encode_fasta(example_fasta, work / "example.h5", length=200)
    return work


def script(cluster: Cluster, work: Path, *args: str, env: dict | None = None) -> Path:
    """`diffaug slurm ARGS` run in ``work``; the printed script saved beside the outputs."""
    proc = subprocess.run([*DIFFAUG, "slurm", *args], cwd=work, capture_output=True, text=True,
                          env={**cluster.env, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    path = work / f"job-{len(list(work.glob('job-*.sh')))}.sh"
    path.write_text(proc.stdout)
    return path


def submit(cluster: Cluster, path: Path, env: dict | None = None) -> int:
    out = subprocess.run(["sbatch", "--parsable", str(path)], env={**cluster.env, **(env or {}),
                                                                    "DIFFAUG_NO_BAR": "1"},
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split(";")[0])


def logs(run_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((run_dir / "logs").glob("*.out")))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    enc = torch.load(run_dir / "encoder.pt", weights_only=True)
    gen = torch.load(run_dir / "generator.pt", weights_only=True)
    return {**{f"encoder.{k}": v for k, v in enc["encoder"].items()},
            **{f"head.{k}": v for k, v in enc["head"].items()},
            **{f"ema.{k}": v for k, v in gen["denoiser"].items()}}


def fit_script(cluster: Cluster, work: Path, name: str) -> Path:
    return script(cluster, work, "fit", "example.h5", "-o", f"runs/{name}", "--preset", "tiny",
                  *MICRO_ARGS, *RANKS, *FIT_RESOURCES, "--job-name", f"fit-{name}")


@pytest.fixture(scope="module")
def fit_job(cluster, work) -> tuple[Path, list]:
    """`diffaug slurm fit ... --nodes 1 --gpus-per-node 0 --tasks-per-node 2` submitted as is,
    with every file write of every process recorded (tests/write_audit.py)."""
    run_dir = work / "runs" / "plain"
    audit = write_audit.env(write_audit.install(work / "audit-site"), run_dir, work / "audit")
    job = submit(cluster, fit_script(cluster, work, "plain"), env=audit)
    return run_dir, cluster.wait(job, timeout_s=300)


def test_fit_job_runs_two_ranks_and_only_rank_0_writes(fit_job, work):
    run_dir, records = fit_job
    assert [(r.state, r.exit_code) for r in records] == [("COMPLETED", 0)], logs(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch_size"] == 32
    assert (run_dir / "encoder.pt").exists() and (run_dir / "generator.pt").exists()
    writes = write_audit.writes_by_rank(work / "audit")
    assert set(writes) == {0, 1} and writes[1] == [], writes.get(1, [])[:5]
    assert any(p.endswith("encoder.pt") for _, p in writes[0])
    assert "fit finished" in logs(run_dir)


def wait_for_metrics(cluster: Cluster, job: int, run_dir: Path, rows: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) > rows:
            assert cluster.state(job) == "RUNNING"
            return
        time.sleep(0.1)
    raise TimeoutError(f"{run_dir}: no training progress\n{logs(run_dir)}")


def test_preempted_fit_jobs_checkpoint_requeue_and_resume_to_the_same_weights(
        cluster, work, fit_job):
    """Two jobs at once: one gets USR1 in its batch script (`scancel --batch --signal=USR1`,
    what --signal=B:USR1@S does before the time limit), the other `scontrol requeue` (SIGTERM
    to every process, as when a cluster preempts a job). Both checkpoint, are requeued,
    restart with `--resume auto` and end with exactly the weights of the uninterrupted job."""
    jobs = {name: submit(cluster, fit_script(cluster, work, name)) for name in ("usr1", "requeue")}
    dirs = {name: work / "runs" / name for name in jobs}
    for name, job in jobs.items():
        wait_for_metrics(cluster, job, dirs[name], rows=4)
        if name == "usr1":
            assert cluster.run("scancel", "--batch", "--signal=USR1", str(job)).returncode == 0
        else:
            assert cluster.run("scontrol", "requeue", str(job)).returncode == 0
    reference = weights(fit_job[0])
    for name, job in jobs.items():
        records = cluster.wait(job, timeout_s=300)
        text = logs(dirs[name])
        assert [(r.state, r.exit_code, r.restarts) for r in records] == [("COMPLETED", 0, 1)], text
        assert "restart 1" in text and "stopped by signal after writing a checkpoint" in text
        assert "resuming at stage" in text
        if name == "usr1":
            assert "USR1: asking the ranks to checkpoint" in text and "requeueing" in text
        resumed = weights(dirs[name])
        assert resumed.keys() == reference.keys()
        assert all(torch.equal(resumed[k], reference[k]) for k in reference), name


def test_a_fit_job_never_joins_a_running_fit(cluster, work, fit_job, monkeypatch):
    """One writer per run directory, with SLURM: while a live fit holds the run (here this test
    process, holding its lock), a job submitted for it exits 75 without starting its ranks and
    names the holder (the run submitted twice); when the holder is an earlier instance of the
    same job, the job requeues itself until the lock is free, then runs to the same weights."""
    from diffaug_genomics.run_lock import Lock

    run_dir = work / "runs" / "twice"
    with Lock(run_dir, "diffaug fit"):
        records = cluster.wait(submit(cluster, fit_script(cluster, work, "twice")), timeout_s=120)
    text = logs(run_dir)
    assert [(r.state, r.exit_code, r.restarts) for r in records] == [("FAILED", 75, 0)], text
    assert f"held by diffaug fit, pid {os.getpid()}" in text
    assert "not starting a second one" in text and not (run_dir / "config.yaml").exists()

    run_dir = work / "runs" / "requeued"
    job = cluster.sbatch(fit_script(cluster, work, "requeued"), "--hold")
    monkeypatch.setenv("SLURM_JOB_ID", str(job))  # the lock of an earlier instance of the job
    with Lock(run_dir, "diffaug fit"):
        assert cluster.run("scontrol", "release", str(job)).returncode == 0
        deadline = time.monotonic() + 120
        while "requeueing" not in (logs(run_dir) if (run_dir / "logs").is_dir() else ""):
            assert time.monotonic() < deadline, "the job did not requeue itself"
            time.sleep(0.2)
    records = cluster.wait(job, timeout_s=300)
    text = logs(run_dir)
    assert [(r.state, r.exit_code) for r in records] == [("COMPLETED", 0)], text
    assert records[0].restarts >= 1 and f"an earlier instance of job {job}" in text
    reference, got = weights(fit_job[0]), weights(run_dir)
    assert all(torch.equal(got[k], reference[k]) for k in reference)


def test_multi_node_script_rendezvous_on_the_first_host(cluster, work, fit_job):
    """The several-nodes script (torchrun agents meeting at a c10d rendezvous on the first host
    of the allocation) run on the one node this cluster has: same job, same weights."""
    path = script(cluster, work, "fit", "example.h5", "-o", "runs/multi", "--preset", "tiny",
                  *MICRO_ARGS, *RANKS, *FIT_RESOURCES[2:], "--nodes", "2")
    text = path.read_text()
    assert "--rdzv-endpoint" in text and "#SBATCH --nodes=2" in text
    path.write_text(text.replace("#SBATCH --nodes=2", "#SBATCH --nodes=1"))
    records = cluster.wait(submit(cluster, path), timeout_s=300)
    run_dir = work / "runs" / "multi"
    assert [(r.state, r.exit_code) for r in records] == [("COMPLETED", 0)], logs(run_dir)
    assert f"rendezvous {cluster.node}:" in logs(run_dir)
    reference, got = weights(fit_job[0]), weights(run_dir)
    assert all(torch.equal(got[k], reference[k]) for k in reference)


def test_embed_array_of_three_then_merge_equals_unsharded_embed(cluster, work, fit_job):
    run_dir = fit_job[0]
    path = script(cluster, work, "embed", str(run_dir), "example.h5", "-o", "emb/e.h5",
                  "--array", "3", "--gpus-per-node", "0", "--time", "00:05:00")
    assert "#SBATCH --array=0-2" in path.read_text()
    records = cluster.wait(submit(cluster, path), timeout_s=300)
    assert len(records) == 3 and all(r.state == "COMPLETED" and r.exit_code == 0
                                     for r in records), records
    shards = sorted((work / "emb").glob("e.shard-*-of-00003.h5"))
    assert [p.name[:14] for p in shards] == ["e.shard-00000-", "e.shard-00001-", "e.shard-00002-"]
    env = {**os.environ, "DIFFAUG_NO_BAR": "1"}
    subprocess.run([*DIFFAUG, "merge", "-o", "emb/e.h5"], cwd=work, env=env, check=True)
    subprocess.run([*DIFFAUG, "embed", str(run_dir), "example.h5", "-o", "full.h5"], cwd=work,
                   env=env, check=True)
    with h5py.File(work / "emb" / "e.h5") as merged, h5py.File(work / "full.h5") as full:
        assert list(merged["ids"][()]) == list(full["ids"][()])
        np.testing.assert_allclose(merged["embeddings"][()], full["embeddings"][()],
                                   rtol=1e-5, atol=1e-6)
