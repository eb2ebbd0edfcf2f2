"""A throwaway single-node SLURM cluster on loopback, for the tests in this folder.

Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and ``munge`` (installed with apt-get when
missing, as root) run without systemd or cgroups. Everything the cluster needs lives in one
private folder: its ``slurm.conf`` (clients find it through ``SLURM_CONF``), munge key and
socket, state, spool, logs and PID files, and it listens on two free ports, so it touches
neither ``/etc/slurm`` nor another cluster on the same machine. :meth:`Cluster.down` cancels
every job and stops the three daemons by the PIDs they wrote, nothing else.

Settings that matter (measured on Slurm 22.05): ``batch_sched_delay=0`` and short scheduler
intervals (otherwise jobs start in 3 s steps and a requeued job waits ~40 s); ``cred_expire=10``
(a requeued job waits ``cred_expire + 1`` s before it may start again); ``proctrack/linuxproc``
and ``task/none`` (no cgroups); no accounting, so ``sacct`` does not work: job state comes from
``scontrol show job``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged", "mungekey"]


class Unavailable(Exception):  # noqa: N818 - a reason to skip, not an error
    """SLURM cannot run here (packages missing and not installable)."""


def ensure_packages() -> None:
    """Install the Debian packages if a command is missing; :class:`Unavailable` if impossible."""
    if all(shutil.which(c) for c in COMMANDS):
        return
    if os.geteuid() != 0:
        raise Unavailable("SLURM is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        raise Unavailable("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not all(shutil.which(c) for c in COMMANDS):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        raise Unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {tail[0]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Job:
    """What ``scontrol show job`` says about a job that has left the queue."""

    id: int
    state: str
    exit_code: int
    signal: int
    restarts: int


class Cluster:
    """One controller and one compute node on this machine; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.socket = self.munge_dir / "munge.socket.2"
        self.pids = {"slurmd": self.root / "slurmd.pid", "slurmctld": self.root / "slurmctld.pid",
                     "munged": self.munge_dir / "munged.pid"}
        self.node = socket.gethostname().split(".")[0]

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, squeue, ...) and the jobs they submit."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ----------------------------------------------------------------------------- up, down
    def up(self, timeout_s: float = 30) -> float:
        """Start munged, slurmctld and slurmd; returns seconds until the node was idle."""
        ensure_packages()
        if os.geteuid() != 0:
            raise Unavailable("the test cluster runs its daemons as root")
        t0 = time.monotonic()
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.munge_dir.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        shutil.chown(self.munge_dir, "munge", "munge")
        key = self.munge_dir / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True,
                           capture_output=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
        self._write_conf()
        subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--socket={self.socket}",
                        f"--key-file={key}", f"--pid-file={self.pids['munged']}",
                        f"--log-file={self.munge_dir / 'munged.log'}",
                        f"--seed-file={self.munge_dir / 'munged.seed'}"], check=True)
        subprocess.run(["slurmctld", "-c", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=self.env)
        while time.monotonic() - t0 < timeout_s:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True,
                                 text=True).stdout.split()
            if "idle" in out:
                return time.monotonic() - t0
            time.sleep(0.1)
        logs = "\n".join((self.root / "log" / f).read_text()[-2000:]
                         for f in ("slurmctld.log", "slurmd.log")
                         if (self.root / "log" / f).exists())
        raise RuntimeError(f"the SLURM node did not become idle in {timeout_s} s\n{logs}")

    def down(self) -> float:
        """Cancel every job, then stop the daemons by PID (SIGKILL after 15 s); seconds taken."""
        t0 = time.monotonic()
        if self._alive("slurmctld") is not None:
            ids = subprocess.run(["squeue", "-h", "-o", "%A"], env=self.env,
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], env=self.env, capture_output=True)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and subprocess.run(
                        ["squeue", "-h"], env=self.env, capture_output=True,
                        text=True).stdout.strip():
                    time.sleep(0.1)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self._alive(name)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._alive(name) == pid:
                time.sleep(0.05)
            if self._alive(name) == pid:
                os.kill(pid, signal.SIGKILL)
        return time.monotonic() - t0

    def _alive(self, name: str) -> int | None:
        """The PID in ``name``'s pid file if that process is running and really is ``name``."""
        try:
            pid = int(self.pids[name].read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        return pid if comm == name else None

    def _write_conf(self) -> None:
        topo = subprocess.run(["slurmd", "-C"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
        topo = re.sub(r"^NodeName=\S+\s*", "", topo)
        topo = re.sub(r"\s*RealMemory=\d+", "", topo)
        with open("/proc/meminfo") as fh:
            avail_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable"))
        r = self.root
        self.conf.write_text(f"""\
# Throwaway single-node SLURM for diffaug-genomics tests (tests/slurm/harness.py).
ClusterName=diffaugtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={self.pids['slurmctld']}
SlurmdPidFile={self.pids['slurmd']}
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
NodeName={self.node} NodeAddr=127.0.0.1 {topo} RealMemory={int(avail_kb / 1024 * 0.8)} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    # --------------------------------------------------------------------------------- jobs
    def sbatch(self, script: Path, *args: str) -> int:
        """Submit ``script``; returns the job id (array jobs: the array's id)."""
        out = subprocess.run(["sbatch", "--parsable", *args, str(script)], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        return int(out.strip().split(";")[0])

    def state(self, job_id: int) -> str:
        """The job's state (``PENDING``, ``RUNNING``, ...); '' once it left the queue."""
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], env=self.env,
                             capture_output=True, text=True).stdout.split()
        return out[0] if out else ""

    def wait_state(self, job_id: int, state: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state(job_id) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not {state} after {timeout_s} s")
            time.sleep(0.2)

    def wait(self, job_id: int, timeout_s: float = 300) -> list[Job]:
        """Poll every 0.2 s until the job (every array task) left the queue; their records."""
        deadline = time.monotonic() + timeout_s
        while subprocess.run(["squeue", "-h", "-j", str(job_id)], env=self.env,
                             capture_output=True, text=True).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still queued after {timeout_s} s")
            time.sleep(0.2)
        return self.jobs(job_id)

    def jobs(self, job_id: int) -> list[Job]:
        out = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        records = []
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            code, sig = (int(x) for x in fields.get("ExitCode", "0:0").split(":"))
            records.append(Job(int(fields["JobId"]), fields.get("JobState", "?"), code, sig,
                               int(fields.get("Restarts", "0"))))
        return records

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster (e.g. ``scancel``)."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True)
