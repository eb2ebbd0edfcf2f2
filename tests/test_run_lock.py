"""One writer per run directory or output (issue #26), with real processes.

A writer is frozen with SIGSTOP while it holds its lock, so that "at the same time" is certain
rather than a matter of timing: a second fit, a `fit --resume`, `embed` and `report` then meet
it mid-run; SIGCONT lets it finish, and its run must equal a run alone bit for bit. Then:
kill -9 and `fit --resume` (no manual cleanup), the lease of a writer on another machine
(expired by moving its heartbeat back in time), several ranks refused together, the lock's own
protocol (one winner among processes clearing one stale lock, heartbeat, a lost lock), and
outputs written twice at once (one whole file, or the second refused).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import MICRO

from diffaug_genomics.run_lock import Lock, LockLost, lock_path

PY = sys.executable
DIFFAUG = [PY, "-m", "diffaug_genomics_cli.main"]
ENV = {k: v for k, v in os.environ.items()
       if not k.startswith(("SLURM_", "MASTER_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
ENV.update({"DIFFAUG_NO_BAR": "1", "OMP_NUM_THREADS": "1", "DIFFAUG_DIST_TIMEOUT": "60"})
MICRO_ARGS = [a for o in MICRO for a in ("--set", o)]


def fit_cmd(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*DIFFAUG, "fit", str(data), "-o", str(run_dir), "--preset", "tiny", *MICRO_ARGS,
            *extra]


def run(*argv: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], env=env or ENV, capture_output=True,
                          text=True, timeout=300)


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("diffaug: error")]


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError("the writer never got there")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    enc = torch.load(run_dir / "encoder.pt", weights_only=True)
    gen = torch.load(run_dir / "generator.pt", weights_only=True)
    return {**{f"encoder.{k}": v for k, v in enc["encoder"].items()},
            **{f"head.{k}": v for k, v in enc["head"].items()},
            **{f"ema.{k}": v for k, v in gen["denoiser"].items()}}


def assert_same_run(run_dir: Path, reference: Path) -> None:
    got, want = weights(run_dir), weights(reference)
    assert got.keys() == want.keys()
    assert [k for k in want if not torch.equal(got[k], want[k])] == []

    def rows(d: Path) -> list[dict[str, str]]:  # every column but the timings
        with open(d / "metrics.csv", newline="") as fh:
            return [{k: v for k, v in row.items() if k not in ("time_s", "samples_per_s")}
                    for row in csv.DictReader(fh)]

    assert rows(run_dir) == rows(reference)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def data(example_fasta, tmp_path_factory) -> Path:
    from diffaug_genomics.encode import encode_fasta

    folder = tmp_path_factory.mktemp("lock-data")
    fasta = folder / "reads.fa"
    fasta.write_text("".join(example_fasta.read_text().splitlines(keepends=True)[:256]))
    encode_fasta(fasta, folder / "reads.h5", length=200)
    return folder / "reads.h5"


@pytest.fixture(scope="module")
def alone(data, tmp_path_factory) -> Path:
    """The run, written by a fit that had the directory to itself."""
    run_dir = tmp_path_factory.mktemp("alone") / "run"
    proc = run(*fit_cmd(data, run_dir))
    assert proc.returncode == 0, proc.stderr
    return run_dir


# ---------------------------------------------------------------- a writer meets the others
def test_a_running_fit_refuses_a_second_fit_a_resume_and_unfinished_reads(data, alone,
                                                                         tmp_path):
    run_dir = tmp_path / "run"
    fast_beat = {**ENV, "DIFFAUG_LOCK_LEASE_S": "0.5"}  # a heartbeat every 0.05 s: no effect
    writer = subprocess.Popen(fit_cmd(data, run_dir), env=fast_beat, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "latest.pt").exists()
                 and (run_dir / "metrics.csv").exists())
        beat = lock_path(run_dir).stat().st_mtime_ns
        wait_for(lambda: lock_path(run_dir).stat().st_mtime_ns > beat, timeout=10)  # renewing
        writer.send_signal(signal.SIGSTOP)  # mid-run, holding its lock
        before = snapshot(run_dir)
        host = socket.gethostname()

        for argv in (fit_cmd(data, run_dir, "--seed", "1"), fit_cmd(data, run_dir, "--resume"),
                     fit_cmd(data, run_dir, "--resume", "auto")):
            t0 = time.monotonic()
            proc = run(*argv)
            seconds = time.monotonic() - t0
            assert proc.returncode == 75, proc.stderr
            [line] = errors(proc)
            assert f"being written by diffaug fit, pid {writer.pid} on {host}" in line, line
            assert f"kill {writer.pid}" in line and str(lock_path(run_dir)) in line
            assert seconds < 30  # at once (the time to start Python; make bench-lock times it)
            assert snapshot(run_dir) == before  # it wrote nothing

        proc = run(*DIFFAUG, "embed", run_dir, data, "-o", tmp_path / "e.h5")
        assert proc.returncode == 75, proc.stderr
        [line] = errors(proc)
        assert "the run is in progress" in line and f"pid {writer.pid}" in line
        assert not (tmp_path / "e.h5").exists()

        proc = run(*DIFFAUG, "report", run_dir, "-o", tmp_path / "r.html")
        if "matplotlib" not in proc.stderr:
            assert proc.returncode == 0, proc.stderr
            page = (tmp_path / "r.html").read_text()
            assert f"in progress (being written by diffaug fit, pid {writer.pid}" in page
            latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
            p = latest["progress"]
            assert (f"latest.pt: stage {p['stage'] + 1}, unit {p['unit']}, step "
                    f"{p['step_in_unit']}") in page
        assert {k: v for k, v in snapshot(run_dir).items() if k in before} == before
    finally:
        writer.send_signal(signal.SIGCONT)
        _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert not lock_path(run_dir).exists()
    assert_same_run(run_dir, alone)
    proc = run(*DIFFAUG, "embed", run_dir, data, "-o", tmp_path / "e.h5")
    assert proc.returncode == 0, proc.stderr


def test_kill_9_then_resume_needs_no_cleanup_and_ends_like_a_run_alone(data, alone, tmp_path):
    run_dir = tmp_path / "run"
    writer = subprocess.Popen(fit_cmd(data, run_dir), env=ENV, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "warmup.pt").exists())
    finally:
        writer.kill()
        writer.wait()
    assert lock_path(run_dir).exists() and not (run_dir / "encoder.pt").exists()
    proc = run(*fit_cmd(data, run_dir, "--resume"))
    assert proc.returncode == 0, proc.stderr
    assert (f"cleared the lock of diffaug fit, pid {writer.pid} on {socket.gethostname()}"
            in proc.stderr) and "its process" in proc.stderr and "has ended" in proc.stderr
    assert "resuming at stage" in proc.stderr
    assert not lock_path(run_dir).exists()
    assert_same_run(run_dir, alone)
    final = snapshot(run_dir)
    proc = run(*fit_cmd(data, run_dir, "--resume"))  # finished: the final files stay as they are
    assert proc.returncode == 0, proc.stderr
    assert {k: final[k] for k in ("encoder.pt", "generator.pt")} == {
        k: snapshot(run_dir)[k] for k in ("encoder.pt", "generator.pt")}


def _record_of_another_machine(lock: Path, age_s: float, lease_s: float = 300.0) -> None:
    record = {"schema": "diffaug-genomics/lock/1", "what": "diffaug fit", "host": "node-elsewhere",
              "pid": 4242, "pid_start": "17", "boot_id": "another-boot", "pid_ns": "pid:[1]",
              "started": time.time() - 3600, "command": "diffaug fit reads.h5 -o run",
              "slurm_job": "8123", "lease_s": lease_s, "token": "f" * 32}
    lock.write_text(json.dumps(record))
    then = time.time() - age_s
    os.utime(lock, (then, then))


def test_a_lease_of_another_machine_holds_until_it_expires(data, tmp_path):
    """Its process cannot be checked from here: the lock holds while its heartbeat is younger
    than its lease (its own, from the record) and is cleared once it is older."""
    run_dir = tmp_path / "run"
    lock = lock_path(run_dir)
    for age, lease in ((5.0, 300.0), (400.0, 1000.0)):
        _record_of_another_machine(lock, age, lease)
        proc = run(*fit_cmd(data, run_dir, "--resume", "auto"))
        assert proc.returncode == 75, proc.stderr
        [line] = errors(proc)
        assert "pid 4242 on node-elsewhere" in line and "SLURM job 8123" in line
        assert f"expires {lease:.0f} s after its last renewal" in line
        assert not run_dir.exists()
    _record_of_another_machine(lock, 301.0)
    proc = run(*fit_cmd(data, run_dir, "--resume", "auto", "--set", "schedule.rounds=0"))
    assert proc.returncode == 0, proc.stderr
    assert "cleared the lock of diffaug fit, pid 4242 on node-elsewhere" in proc.stderr
    assert re.search(r"it was not renewed for 30\d s \(lease 300 s\)", proc.stderr), proc.stderr
    assert (run_dir / "encoder.pt").exists() and not lock.exists()


def test_ranks_fail_together_when_rank_0_cannot_take_the_lock(data, tmp_path):
    run_dir = tmp_path / "run"
    port = _free_port()
    with Lock(run_dir, "diffaug fit"):
        procs = []
        for rank in (0, 1):
            env = {**ENV, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            procs.append(subprocess.Popen(fit_cmd(data, run_dir, "--set", "optim.batch_size=16"),
                                          env=env, stderr=subprocess.PIPE, text=True))
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [75, 75], results
    assert f"pid {os.getpid()}" in results[0][1]
    assert "rank 1 of 2: rank 0 could not take the run directory's lock" in results[1][1]
    assert f"diffaug fit, pid {os.getpid()}" in results[1][1]
    assert not run_dir.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_or_terminated_fit_leaves_no_lock(data, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(*fit_cmd(data, run_dir, "--resume"))  # nothing to resume: exit 2
    assert proc.returncode == 2 and not lock_path(run_dir).exists(), proc.stderr
    writer = subprocess.Popen(fit_cmd(data, run_dir), env=ENV, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: lock_path(run_dir).exists())
    writer.send_signal(signal.SIGTERM)  # before training (checkpoint-and-stop) or during it
    _, err = writer.communicate(timeout=120)
    assert writer.returncode in (75, 128 + signal.SIGTERM), err
    assert "Traceback" not in err and not lock_path(run_dir).exists()


def test_fit_removes_only_its_own_stale_temporary_files(data, alone, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(alone, run_dir)
    (run_dir / "encoder.pt").unlink()  # unfinished: --resume writes the final files
    ours = run_dir / ".config.yaml.x1y2z3.tmp"
    theirs = run_dir / ".report.html.a1b2c3.tmp"  # `diffaug report` writing into the run
    for p in (ours, theirs):
        p.write_text("partial")
    proc = run(*fit_cmd(data, run_dir, "--resume"))
    assert proc.returncode == 0, proc.stderr
    assert not ours.exists() and theirs.exists()


# ------------------------------------------------------------------------ the lock itself
CLEARER = """
import sys, time
from pathlib import Path
from diffaug_genomics.errors import Busy
from diffaug_genomics.run_lock import Lock
lock = Lock(sys.argv[1], "clearer")
try:
    lock.acquire()
except Busy:
    print("busy", flush=True)
    sys.exit(0)
print("got", flush=True)
while not Path(sys.argv[2]).exists():  # hold it until every process has tried
    time.sleep(0.01)
lock.release()
"""


def test_of_processes_clearing_one_stale_lock_exactly_one_takes_it(tmp_path):
    target = tmp_path / "run"
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    record = json.loads(Lock(target, "x").me.to_json())
    lock_path(target).write_text(json.dumps({**record, "pid": dead.pid, "pid_start": ""}))
    done = tmp_path / "everyone-tried"
    procs = [subprocess.Popen([PY, "-c", CLEARER, str(target), str(done)], env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    said = sorted(p.stdout.readline().strip() for p in procs)
    done.touch()
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert said == ["busy"] * 5 + ["got"], errs
    assert sum("cleared the lock of x" in err for err in errs) == 1, errs
    assert not lock_path(target).exists()
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.break"))


def test_the_heartbeat_renews_the_lease_and_a_lost_lock_stops_the_writer(tmp_path):
    from diffaug_genomics.io.atomic import atomic_output

    target = tmp_path / "out"
    target.mkdir()
    lost: list[LockLost] = []
    lock = Lock(target, "diffaug fit", lease_s=0.5, on_lost=lost.append)
    lock.acquire()
    try:
        first = lock.path.stat().st_mtime_ns
        wait_for(lambda: lock.path.stat().st_mtime_ns > first, timeout=10)  # renewed
        with atomic_output(target / "a.txt") as tmp:  # ours: commits go through
            tmp.write_text("a")
        other = json.loads(lock.path.read_text())
        lock.path.write_text(json.dumps({**other, "token": "0" * 32, "pid": 1}))  # taken over
        with pytest.raises(LockLost, match="lost its lock to"), \
                atomic_output(target / "b.txt") as tmp:
            tmp.write_text("b")
        assert not (target / "b.txt").exists() and not list(target.glob(".*.tmp"))
        wait_for(lambda: bool(lost), timeout=10)
    finally:
        lock.release()
    assert lock.path.exists()  # the new holder's record is not ours to remove


def test_an_unreadable_lock_record_holds_until_its_lease_has_passed(tmp_path):
    """A damaged record (or one written by the O_EXCL fallback, caught half written) tells
    nothing about its holder but its age."""
    from diffaug_genomics.errors import Busy

    target = tmp_path / "run"
    lock_path(target).write_text("{ not a record")
    with pytest.raises(Busy, match="an unreadable lock record.*counts as stale 300 s after"):
        Lock(target, "diffaug fit").acquire()
    then = time.time() - 301
    os.utime(lock_path(target), (then, then))
    with Lock(target, "diffaug fit") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock_path(target).exists()


LOSER = """
import sys, time
from diffaug_genomics.progress import configure_logging
from diffaug_genomics.run_lock import Lock
configure_logging()
Lock(sys.argv[1], "diffaug fit", lease_s=0.5).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_process_that_lost_its_lock_exits_at_once(tmp_path):
    target = tmp_path / "run"
    proc = subprocess.Popen([PY, "-c", LOSER, str(target)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    record = json.loads(lock_path(target).read_text())
    lock_path(target).write_text(json.dumps({**record, "token": "0" * 32, "pid": 1}))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "lost its lock" in err, err


def test_a_refused_fit_does_not_wait_for_torch():
    """The lock is taken before torch is imported (seconds on a cold cluster file system)."""
    proc = run(PY, "-c", "import sys, diffaug_genomics.fit, diffaug_genomics_cli.main; "
                         "print('torch' in sys.modules)")
    assert proc.stdout.strip() == "False", proc.stderr


# ------------------------------------------------------------------ outputs written twice
@pytest.mark.parametrize("force", [False, True])
def test_two_embeds_of_one_output_leave_one_whole_file(alone, data, tmp_path, force):
    import h5py

    out = tmp_path / "e.h5"
    argv = [*DIFFAUG, "embed", str(alone), str(data), "-o", str(out)] + (["--force"] if force
                                                                          else [])
    procs = [subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    if force:
        assert [code for code, _ in results] == [0, 0], results
    else:  # the second is refused: at its start, or when it finds the file written meanwhile
        assert [code for code, _ in results] == [0, 2], results
        assert "output exists" in results[1][1]
    with h5py.File(out) as f:
        assert f["embeddings"].shape == (128, 16) and len(f["ids"]) == 128
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_shard_written_by_another_task_is_refused_then_skipped(alone, data, tmp_path):
    """A retried array task whose first instance still writes the shard (FASTA + its record)."""
    from diffaug_genomics.modalities.fasta_shards import sidecar_path, verify_fasta_shard

    argv = [*DIFFAUG, "generate", str(alone), str(data), "-o", str(tmp_path / "pos.fa"),
            "--shard", "0/2", "--steps", "2"]
    shard = tmp_path / "pos.shard-00000-of-00002.fa"
    first = subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: lock_path(shard).exists())
        first.send_signal(signal.SIGSTOP)
        proc = run(*argv)
        assert proc.returncode == 75, proc.stderr
        [line] = errors(proc)
        assert f"being written by diffaug generate, pid {first.pid}" in line
        proc = run(*DIFFAUG, "merge", "-o", tmp_path / "pos.fa", shard)
        assert proc.returncode == 75 and f"pid {first.pid}" in errors(proc)[0], proc.stderr
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    record = verify_fasta_shard(shard)  # the FASTA and its record belong together
    assert record["records"] == 64
    proc = run(*argv)
    assert proc.returncode == 0 and "complete already: skipped" in proc.stderr, proc.stderr
    sidecar_path(shard).unlink()  # a task killed between the shard's rename and its record
    proc = run(*argv)  # is written again, without --force
    assert proc.returncode == 0 and "writing it again" in proc.stderr, proc.stderr
    assert verify_fasta_shard(shard) == record


def test_an_output_written_meanwhile_is_kept_without_force(tmp_path):
    from diffaug_genomics.errors import InputError
    from diffaug_genomics.io.atomic import atomic_output

    out = tmp_path / "x.txt"
    with pytest.raises(InputError, match="another command wrote it while this one ran"), \
            atomic_output(out) as tmp:
        tmp.write_text("second")
        out.write_text("first, whole")  # another command finished first
    assert out.read_text() == "first, whole" and not list(tmp_path.glob(".*.tmp"))
    with atomic_output(out, force=True) as tmp:
        tmp.write_text("second, whole")
        out.write_text("first, whole")
    assert out.read_text() == "second, whole"
