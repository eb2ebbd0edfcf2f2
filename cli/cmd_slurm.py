"""``diffaug slurm fit|embed|generate ARGS...``: print a ready sbatch script for a command.

ARGS are the command's own arguments (checked with its parser before anything is printed);
the options below ask for resources. The script goes to standard output; the log directory it
names is created, because SLURM cannot open a log in a missing directory.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Print sbatch scripts for fit, embed and generate on a SLURM cluster.",
                  no_args_is_help=True)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

NODES = typer.Option(1, "--nodes", help="Nodes (fit: one torchrun per node).")
GPUS = typer.Option(..., "--gpus-per-node", help="GPUs per node; 0 runs CPU processes (gloo).")
TASKS = typer.Option(None, "--tasks-per-node", help="fit: training processes per node (default: one per GPU; 1 on CPU).")
TIME = typer.Option(..., "--time", help="Time limit, [D-]HH:MM:SS.")
PARTITION = typer.Option(None, "--partition", help="SLURM partition.")
ACCOUNT = typer.Option(None, "--account", help="SLURM account.")
CPUS = typer.Option(None, "--cpus-per-task", help="CPUs per srun task (fit: for all the processes on a node).")
NAME = typer.Option(None, "--job-name", help="Job name (default diffaug-COMMAND).")
ARRAY = typer.Option(None, "--array", help="Split the input over N array tasks (one shard each).")


def _print(command: str, ctx: typer.Context, **resources: object) -> None:
    from pathlib import Path

    from diffaug_genomics.slurm import JobSpec, sbatch_script

    output = _parse_args(command, ctx.args)
    spec = JobSpec(command=command, args=tuple(ctx.args), output=Path(output),
                   workdir=Path.cwd(), **resources)  # type: ignore[arg-type]
    script = sbatch_script(spec)
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(script, nl=False)
    typer.echo(f"# logs will go to {spec.log_dir}; submit with: sbatch SCRIPT", err=True)


def _parse_args(command: str, args: list[str]) -> str:
    """Check ``args`` with the command's own parser; returns its ``-o`` value."""
    from diffaug_genomics_cli.main import app as root

    from diffaug_genomics.errors import InputError

    cmd = typer.main.get_command(root).commands[command]  # type: ignore[attr-defined]
    try:
        parsed = cmd.make_context(command, list(args))
    except typer.Exit:
        raise
    except Exception as exc:  # click usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise InputError(f"diffaug slurm {command} ARGS: {message}") from None
    return str(parsed.params["output"])


@app.command("fit", context_settings=PASS_THROUGH)
def fit(ctx: typer.Context, nodes: int = NODES, gpus_per_node: int = GPUS,
        tasks_per_node: int | None = TASKS, time: str = TIME, partition: str | None = PARTITION,
        account: str | None = ACCOUNT, cpus_per_task: int | None = CPUS,
        job_name: str | None = NAME) -> None:
    """Print an sbatch script that runs `diffaug fit ARGS...` on N nodes x G GPUs.

    ARGS are fit's own arguments (INPUT -o RUN_DIR [--preset ...]; see `diffaug fit -h`),
    checked by its parser first. The job uses srun + torchrun and requeues on preemption
    (USR1 -> checkpoint -> requeue -> --resume auto)."""
    _print("fit", ctx, nodes=nodes, gpus_per_node=gpus_per_node, tasks_per_node=tasks_per_node,
           time=time, partition=partition, account=account, cpus_per_task=cpus_per_task,
           job_name=job_name)


@app.command("embed", context_settings=PASS_THROUGH)
def embed(ctx: typer.Context, array: int | None = ARRAY, gpus_per_node: int = GPUS,
          time: str = TIME, nodes: int = NODES, tasks_per_node: int | None = TASKS,
          partition: str | None = PARTITION, account: str | None = ACCOUNT,
          cpus_per_task: int | None = CPUS, job_name: str | None = NAME) -> None:
    """Print an sbatch script that runs `diffaug embed ARGS...`.

    ARGS are embed's own arguments (RUN_DIR INPUT -o OUTPUT ...; see `diffaug embed -h`).
    With --array N, a job array of N shards (join them with `diffaug merge -o OUTPUT`)."""
    _print("embed", ctx, nodes=nodes, gpus_per_node=gpus_per_node, tasks_per_node=tasks_per_node,
           time=time, partition=partition, account=account, cpus_per_task=cpus_per_task,
           job_name=job_name, array=array)


@app.command("generate", context_settings=PASS_THROUGH)
def generate(ctx: typer.Context, array: int | None = ARRAY, gpus_per_node: int = GPUS,
             time: str = TIME, nodes: int = NODES, tasks_per_node: int | None = TASKS,
             partition: str | None = PARTITION, account: str | None = ACCOUNT,
             cpus_per_task: int | None = CPUS, job_name: str | None = NAME) -> None:
    """Print an sbatch script that runs `diffaug generate ARGS...`.

    ARGS are generate's own arguments (RUN_DIR INPUT -o OUTPUT ...; see `diffaug generate
    -h`). With --array N, a job array of N shards (join them with `diffaug merge -o
    OUTPUT`)."""
    _print("generate", ctx, nodes=nodes, gpus_per_node=gpus_per_node,
           tasks_per_node=tasks_per_node, time=time, partition=partition, account=account,
           cpus_per_task=cpus_per_task, job_name=job_name, array=array)
