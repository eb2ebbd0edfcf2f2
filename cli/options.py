"""Options several commands share, and what each computing command does first."""

from __future__ import annotations

import typer

THREADS_HELP = ("CPU threads to compute with (default: DIFFAUG_THREADS, else OMP_NUM_THREADS, "
                "else the CPUs this process may use - affinity mask, SLURM_CPUS_PER_TASK - "
                "less those other processes keep busy).")


def threads_option() -> object:
    """``--threads N`` (a fresh Option per command: Typer keeps state on the object)."""
    return typer.Option(None, "--threads", min=1, metavar="N", show_default=False,
                        help=THREADS_HELP)


def start(threads: int | None) -> None:
    """Log lines to stderr, then the threads to compute with (a warning when the machine is
    oversubscribed): the first thing every computing command does after parsing."""
    from diffaug_genomics.progress import configure_logging
    from diffaug_genomics.threads import apply_threads

    configure_logging()
    apply_threads(threads)
