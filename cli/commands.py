"""Registers every ``diffaug`` sub-command on the Typer app (one module per command)."""

from __future__ import annotations

import importlib

import typer

# (command name, module in this package, function in that module)
COMMANDS = [
    ("encode", "cmd_encode", "encode"),
    ("inspect", "cmd_inspect", "inspect"),
    ("fit", "cmd_fit", "fit"),
    ("embed", "cmd_embed", "embed"),
    ("generate", "cmd_generate", "generate"),
    ("evaluate", "cmd_evaluate", "evaluate"),
    ("merge", "cmd_merge", "merge"),
    ("report", "cmd_report", "report"),
    ("config", "cmd_config", "config"),
]


# (group name, module holding a Typer app of sub-commands)
GROUPS = [
    ("slurm", "cmd_slurm"),
]


def register(app: typer.Typer) -> None:
    """Attach every command and command group to ``app``."""
    for name, module, func in COMMANDS:
        mod = importlib.import_module(f"diffaug_genomics_cli.{module}")
        app.command(name)(getattr(mod, func))
    for name, module in GROUPS:
        app.add_typer(importlib.import_module(f"diffaug_genomics_cli.{module}").app, name=name)
