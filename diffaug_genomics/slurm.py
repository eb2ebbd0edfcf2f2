"""sbatch scripts for ``fit``, ``embed`` and ``generate`` (``diffaug slurm``).

The scripts are the documented templates in ``resources/slurm/`` with ``{{NAME}}`` fields
filled in:

* ``fit-one-node.sbatch``: ``srun`` starts one ``torchrun --standalone`` on the node, which
  starts one training process per GPU (``--gpus-per-node G``), or ``--tasks-per-node T`` gloo
  processes on a CPU-only node (``--gpus-per-node 0``);
* ``fit-multi-node.sbatch``: one ``torchrun`` per node, meeting at a c10d rendezvous on the
  first node of the allocation;
* ``array.sbatch``: ``embed`` / ``generate`` as a job array, one shard per task (or a single
  task without ``--array``).

Fit scripts are requeue-safe: ``--requeue``, ``--signal=B:USR1@S`` with a trap that makes the
ranks checkpoint and requeues the job, and ``fit --resume auto``. They never start a second
writer: before the ranks start they ask :mod:`diffaug_genomics.run_lock` who holds the run
directory, requeue when it is an earlier instance of the same job and exit 75 when it is anyone
else. Logs go to ``logs/`` in the run directory (``fit``) or beside the output (``embed``,
``generate``).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from diffaug_genomics.errors import InputError

COMMANDS = ("fit", "embed", "generate")
SIGNAL_LEAD_S = 120
"""USR1 arrives this many seconds before the time limit (less for jobs under 8 minutes)."""


@dataclass(frozen=True)
class JobSpec:
    """What to run and the resources to ask for.

    ``args`` are the command's own arguments; ``output`` is its ``-o`` (the run directory for
    ``fit``, the output file otherwise). ``tasks_per_node`` is the number of training processes
    per node (default: one per GPU, 1 without GPUs); ``array`` the number of array tasks.
    ``time`` is ``[D-]HH:MM:SS``.
    """

    command: str
    args: tuple[str, ...]
    output: Path
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    array: int | None = None
    cpus_per_task: int | None = None
    job_name: str | None = None
    python: str = sys.executable
    workdir: Path = Path(".")

    @property
    def nproc(self) -> int:
        """Processes per node."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return self.gpus_per_node if self.gpus_per_node > 0 else 1

    @property
    def log_dir(self) -> Path:
        """Where SLURM writes the job's log (must exist before the job starts)."""
        base = self.output if self.command == "fit" else self.output.parent
        return (self.workdir / base / "logs").resolve()


def time_seconds(limit: str) -> int:
    """``[D-]HH:MM:SS`` -> seconds (:class:`InputError` otherwise)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)", limit.strip())
    if m is None:
        raise InputError(f"--time must be [D-]HH:MM:SS, e.g. 04:00:00 or 1-12:00:00 (got {limit!r})")
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def check(spec: JobSpec) -> None:
    """Refuse combinations that cannot work, with a message saying what to change."""
    if spec.command not in COMMANDS:
        raise InputError(f"diffaug slurm: unknown command {spec.command!r} (choose from "
                         f"{', '.join(COMMANDS)})")
    if spec.gpus_per_node < 0:
        raise InputError(f"--gpus-per-node must be 0 or more (got {spec.gpus_per_node})")
    for name, value in (("--nodes", spec.nodes), ("--tasks-per-node", spec.nproc),
                        ("--array", spec.array), ("--cpus-per-task", spec.cpus_per_task)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1 (got {value})")
    time_seconds(spec.time)
    if spec.command == "fit":
        if spec.array is not None:
            raise InputError("--array is for embed and generate (one shard per task), not fit")
        if spec.gpus_per_node > 0 and spec.nproc != spec.gpus_per_node:
            raise InputError(f"fit runs one process per GPU: --tasks-per-node "
                             f"{spec.tasks_per_node} must equal --gpus-per-node "
                             f"{spec.gpus_per_node} (or be left out)")
    else:
        if spec.nodes != 1 or spec.tasks_per_node not in (None, 1):
            raise InputError(f"{spec.command} runs one process per array task on one node: use "
                             "--array N to split the work over N tasks (--nodes 1, no "
                             "--tasks-per-node)")
        if spec.gpus_per_node > 1:
            raise InputError(f"{spec.command} uses one device per task: ask for "
                             "--gpus-per-node 1 and more --array tasks")


def sbatch_script(spec: JobSpec) -> str:
    """The sbatch script for ``spec`` (see the module docstring); :func:`check` first."""
    check(spec)
    limit = time_seconds(spec.time)
    lead = min(SIGNAL_LEAD_S, max(10, limit // 4))
    res = []
    if spec.gpus_per_node > 0:
        res.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.cpus_per_task:
        res.append(f"--cpus-per-task={spec.cpus_per_task}")
    if spec.partition:
        res.append(f"--partition={spec.partition}")
    if spec.account:
        res.append(f"--account={spec.account}")
    if spec.array:
        res.append(f"--array=0-{spec.array - 1}")
    args = list(spec.args)
    if spec.command == "fit":
        template = "fit-one-node" if spec.nodes == 1 else "fit-multi-node"
        if not any(a == "--resume" or a.startswith("--resume=") for a in args):
            args += ["--resume", "auto"]  # a requeued job continues, a new one starts
    else:
        template = "array"
    name = spec.job_name or f"diffaug-{spec.command}"
    fields = {
        "JOB_NAME": name, "WORKDIR": shlex.quote(str(spec.workdir.resolve())),
        "NODES": str(spec.nodes), "NPROC": str(spec.nproc), "WORLD": str(spec.nodes * spec.nproc),
        "TIME": spec.time.strip(), "SIGNAL_S": str(lead), "LOG_DIR": str(spec.log_dir),
        "LOG_ID": "%A_%a" if spec.array else "%j", "PYTHON": shlex.quote(spec.python),
        "RUN_DIR": shlex.quote(str(spec.output)), "COMMAND": spec.command,
        "OUTPUT": shlex.quote(str(spec.output)), "ARGS": shlex.join(args),
        "RESOURCES": "\n".join(f"#SBATCH {r}" for r in res),
    }
    if re.search(r"\s", fields["LOG_DIR"]) or re.search(r"\s", name):
        raise InputError("the log directory and job name cannot contain spaces (SLURM does not "
                         f"quote #SBATCH lines): {fields['LOG_DIR']}")
    text = (resources.files("diffaug_genomics.resources") / "slurm" / f"{template}.sbatch").read_text()
    if not fields["RESOURCES"]:
        text = text.replace("{{RESOURCES}}\n", "")
    return fill(text, fields)


def fill(template: str, fields: dict[str, str]) -> str:
    """Replace every ``{{NAME}}``; a name without a value is an error (a template bug)."""
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in fields:
            raise KeyError(f"template field {m.group(1)} has no value")
        return fields[m.group(1)]

    return re.sub(r"\{\{([A-Z_]+)\}\}", value, template)
