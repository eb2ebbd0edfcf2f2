"""`diffaug slurm`: the printed sbatch scripts are valid bash and ask for what was asked.

Running them for real is tests/slurm (``make test-slurm``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diffaug_genomics.errors import InputError
from diffaug_genomics.slurm import JobSpec, sbatch_script, time_seconds

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {**os.environ, "DIFFAUG_NO_BAR": "1"}


def slurm(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DIFFAUG, "slurm", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True)


def directives(script: str) -> list[str]:
    return re.findall(r"^#SBATCH (\S+)$", script, flags=re.M)


def assert_bash_syntax(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert script.startswith("#!/bin/bash\n") and "{{" not in script


def test_fit_on_one_cpu_node(tmp_path):
    proc = slurm(tmp_path, "fit", "data.h5", "-o", "runs/a", "--preset", "tiny", "--set",
                 "optim.batch_size=16", "--nodes", "1", "--gpus-per-node", "0",
                 "--tasks-per-node", "2", "--time", "00:10:00")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert_bash_syntax(script, tmp_path)
    logs = tmp_path / "runs" / "a" / "logs"
    assert logs.is_dir()  # SLURM cannot open a log in a missing directory
    assert directives(script) == [
        "--job-name=diffaug-fit", f"--chdir={tmp_path}", "--nodes=1", "--ntasks-per-node=1",
        "--time=00:10:00", "--requeue", "--signal=B:USR1@120", "--open-mode=append",
        f"--output={logs}/%x-%j.out"]
    assert "--gpus-per-node" not in script.split("set -uo")[1]
    assert "torch.distributed.run --standalone --nnodes 1 \\\n    --nproc-per-node 2" in script
    assert ("-m diffaug_genomics_cli.main fit data.h5 -o runs/a --preset tiny --set "
            "optim.batch_size=16 --resume auto &") in script
    assert "trap on_usr1 USR1" in script and 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert f"PYTHON={sys.executable}" in script


def test_fit_on_several_gpu_nodes_meets_on_the_first_node(tmp_path):
    proc = slurm(tmp_path, "fit", "data.h5", "-o", "run", "--resume", "--nodes", "4",
                 "--gpus-per-node", "8", "--time", "2-00:00:00", "--partition", "gpu",
                 "--account", "proj42", "--cpus-per-task", "64")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert_bash_syntax(script, tmp_path)
    d = directives(script)
    for want in ("--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=64",
                 "--partition=gpu", "--account=proj42", "--time=2-00:00:00", "--requeue",
                 "--signal=B:USR1@120"):
        assert want in d, (want, d)
    assert 'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert '--rdzv-endpoint "$HEAD_NODE:$RDZV_PORT" --rdzv-id "$SLURM_JOB_ID"' in script
    assert "--nproc-per-node 8" in script and "32 ranks in all" in script
    assert "fit data.h5 -o run --resume=yes &" in script  # the user's own --resume is kept


@pytest.mark.parametrize("command, extra", [
    ("embed", []),
    ("generate", ["--per-sequence", "4", "--steps", "10"]),
])
def test_embed_and_generate_arrays(tmp_path, command, extra):
    proc = slurm(tmp_path, command, "runs/a", "reads.fa", "-o", "out/emb.h5", *extra,
                 "--array", "3", "--gpus-per-node", "1", "--time", "01:30:00",
                 "--partition", "short")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert_bash_syntax(script, tmp_path)
    d = directives(script)
    for want in ("--array=0-2", "--nodes=1", "--ntasks=1", "--gpus-per-node=1",
                 "--partition=short", "--time=01:30:00", "--requeue",
                 f"--output={tmp_path}/out/logs/%x-%A_%a.out"):
        assert want in d, (want, d)
    assert f"main {command} runs/a reads.fa -o out/emb.h5" in script
    assert "diffaug merge -o out/emb.h5" in script
    proc = slurm(tmp_path, command, "runs/a", "reads.fa", "-o", "one.h5", *extra,
                 "--gpus-per-node", "0", "--time", "00:30:00")
    assert proc.returncode == 0, proc.stderr
    assert not any(d.startswith("--array") for d in directives(proc.stdout))
    assert f"--output={tmp_path}/logs/%x-%j.out" in directives(proc.stdout)


@pytest.mark.parametrize("args, needle", [
    (["fit", "d.h5", "-o", "r", "--gpus-per-node", "0", "--time", "1h"], "--time"),
    (["fit", "d.h5", "-o", "r", "--gpus-per-node", "4", "--tasks-per-node", "2",
      "--time", "01:00:00"], "one process per GPU"),
    (["fit", "d.h5", "-o", "r", "--gpus-per-node", "0", "--array", "3",
      "--time", "01:00:00"], "--array"),
    (["embed", "r", "d.h5", "-o", "e.h5", "--nodes", "2", "--gpus-per-node", "0",
      "--time", "01:00:00"], "--array N"),
    (["fit", "d.h5", "--gpus-per-node", "0", "--time", "01:00:00"], "-o"),
    (["fit", "d.h5", "-o", "r", "--sett", "x=1", "--gpus-per-node", "0",
      "--time", "01:00:00"], "--sett"),
])
def test_bad_requests_are_one_line_errors(tmp_path, args, needle):
    proc = slurm(tmp_path, *args)
    assert proc.returncode == 2, proc.stdout
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_time_limits_and_signal_lead():
    assert time_seconds("00:10:00") == 600 and time_seconds("1-02:03:04") == 93784
    spec = JobSpec("fit", ("d.h5", "-o", "r"), Path("r"), time="00:02:00")
    assert "--signal=B:USR1@30" in sbatch_script(spec)  # a quarter of a short limit
    with pytest.raises(InputError):
        time_seconds("90")


STUBS = {  # SLURM commands the scripts call, recording their arguments
    "srun": 'echo "srun $*" >> "$CALLS"; exit "${SRUN_EXIT:-0}"',
    "scontrol": 'echo "scontrol $*" >> "$CALLS"; [ "$1" = show ] && echo node1; exit 0',
    "scancel": 'echo "scancel $*" >> "$CALLS"',
}


def run_script(tmp_path: Path, script: str, **env: str) -> tuple[int, str, list[str]]:
    """Run a generated sbatch script as SLURM would (its #SBATCH lines are comments), with
    srun / scontrol / scancel replaced by stubs; (exit code, output, the stubs' calls)."""
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    path = tmp_path / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", str(path)], cwd=tmp_path, capture_output=True, text=True,
                          env={**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                               "CALLS": str(calls), "SLURM_JOB_ID": "4242",
                               "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "1", **env})
    return proc.returncode, proc.stdout + proc.stderr, calls.read_text().splitlines()


@pytest.mark.parametrize("nodes", ["1", "2"])
@pytest.mark.parametrize("holder", ["none", "another job", "this job"])
def test_fit_scripts_start_no_second_writer(tmp_path, monkeypatch, nodes, holder):
    """Before starting the ranks the script asks who holds the run directory: nobody -> the
    step runs; an earlier instance of this job -> requeue, try again later; anyone else (the
    run submitted twice) -> exit 75 at once, the holder named in the log."""
    from diffaug_genomics.run_lock import Lock

    proc = slurm(tmp_path, "fit", "data.h5", "-o", "runs/a", "--nodes", nodes,
                 "--gpus-per-node", "0", "--time", "00:10:00")
    assert proc.returncode == 0, proc.stderr
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    if holder == "this job":
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
    lock = Lock(tmp_path / "runs" / "a", "diffaug fit")
    if holder != "none":
        lock.acquire()
    try:
        code, log, calls = run_script(tmp_path, proc.stdout)
    finally:
        lock.release()
    ran = [c for c in calls if c.startswith("srun")]
    requeued = [c for c in calls if c.startswith("scontrol requeue")]
    if holder == "none":
        assert code == 0 and len(ran) == 1 and not requeued, log
        return
    assert code == 75 and not ran, log
    assert f"held by diffaug fit, pid {os.getpid()}" in log
    if holder == "this job":
        assert requeued == ["scontrol requeue 4242"] and "requeueing" in log
    else:
        assert not requeued and "not starting a second one" in log


def test_array_script_says_a_busy_task_wrote_nothing(tmp_path):
    proc = slurm(tmp_path, "embed", "runs/a", "reads.fa", "-o", "out/emb.h5", "--array", "3",
                 "--gpus-per-node", "0", "--time", "00:10:00")
    assert proc.returncode == 0, proc.stderr
    code, log, calls = run_script(tmp_path, proc.stdout, SRUN_EXIT="75")
    assert code == 75 and "nothing written; resubmit this task later" in log
    assert [c.split()[0] for c in calls] == ["srun"]
