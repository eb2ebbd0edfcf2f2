"""Every command's --help, rendered at 80 and 120 columns, reads cleanly: nothing past the
width, no Python type names, no metavar or word cut in two, usage lines a person would write,
every argument shown, no summary cut short."""

from __future__ import annotations

import re

import pytest


def all_commands() -> list[list[str]]:
    from diffaug_genomics_cli.main import command

    out: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:
        out.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(command(), [])
    return out


COMMANDS = all_commands()


def render(path: list[str], width: int, monkeypatch, capsys) -> str:
    from diffaug_genomics_cli.main import main

    monkeypatch.setenv("COLUMNS", str(width))
    try:
        main([*path, "--help"])
    except SystemExit as exc:
        assert not exc.code
    out, err = capsys.readouterr()
    assert not err
    return out


def test_every_command_is_covered():
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "encode", "fit", "embed", "generate", "evaluate", "report", "config", "inspect",
            "merge", "slurm", "slurm fit", "slurm embed", "slurm generate"} <= names


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "diffaug")
def test_help_reads_cleanly(path, width, monkeypatch, capsys):
    from diffaug_genomics_cli.main import command

    text = render(path, width, monkeypatch, capsys)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width, text
    assert not re.search(r"<(str|int|float|bool|path|list\[|int range|float range)", text), text
    assert "list[" not in text and "…" not in text and "[[" not in text, text
    usage = lines[0]
    assert usage.startswith("Usage: diffaug") and "{" not in usage and "}" not in usage, usage
    assert not re.search(r"[A-Za-z]-\n\s+[a-z]", text), text  # no word cut after a hyphen
    cmd = command()
    for name in path:
        cmd = cmd.commands[name]
    for param in cmd.params:
        if param.param_type_name == "argument":
            assert param.metavar and param.metavar in usage, (param.name, usage)
        desc = getattr(param, "type_descriptor", None)
        if desc is not None and desc.is_choice and param.metavar:
            for choice in desc.choices:  # a choice list is never cut mid-word
                assert str(getattr(choice, "value", choice)) in text
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            summary = sub.short_help or ""
            assert summary and not summary.endswith("..."), (name, summary)
            row = " ".join(text.split(f"\n  {name} ", 1)[1].split("\n  ")[0].split())
            assert summary in " ".join(text.split()), (name, summary, row)
    settings = getattr(cmd, "context_settings", None) or {}
    if settings.get("allow_extra_args"):  # slurm fit ARGS...: the pass-through is shown
        assert "ARGS..." in usage

