"""Help that reads cleanly at 80 columns: applied once to the whole command tree.

Typer names values by their Python type (``<str>``, ``<list[Path]>``, ``<int range>``) and
writes usage lines such as ``{run_dir} {INPUT}`` or ``[[SHARD]...]...``. :func:`tidy` gives
every value a metavar a person would write (``N``, ``X``, ``PATH``, ``pad|crop|center|window``,
``COLUMN``...), every argument an upper-case name in the usage line (``[NAME]`` when optional,
``NAME...`` when repeated), every command a one-line summary that fits the command list, and
commands that pass their arguments on (``slurm fit``) a usage line that shows them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MAX_CHOICES = 40
"""Choices are spelled out in the metavar up to this many characters (else ``CHOICE``)."""


def _value_kind(param: Any) -> tuple[str, tuple[str, ...]]:
    """(``choice`` | ``int`` | ``float`` | ``path`` | ``text``, the choices) of an option's
    value, from Typer's type descriptor or click's parameter type."""
    import typing

    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        if desc.is_choice:
            return "choice", tuple(str(getattr(c, "value", c)) for c in desc.choices or ())
        annotation = desc.annotation
        if typing.get_origin(annotation) is list:
            (annotation,) = typing.get_args(annotation)
        if desc.is_path or annotation is Path:
            return "path", ()
        return {int: "int", float: "float"}.get(annotation, "text"), ()
    ptype = getattr(param, "type", None)
    name = str(getattr(ptype, "name", "text"))
    if hasattr(ptype, "choices"):
        return "choice", tuple(str(c) for c in ptype.choices)
    return ("int" if name.startswith("integer") else "float" if name.startswith("float")
            else "path" if name in ("path", "file") else "text"), ()


def _option_metavar(param: Any) -> str:
    kind, choices = _value_kind(param)
    if kind == "choice":
        text = "|".join(choices)
        return text if len(text) <= MAX_CHOICES else "CHOICE"
    if kind in ("int", "float", "path"):
        return {"int": "N", "float": "X", "path": "PATH"}[kind]
    long_names = [o for o in param.opts if o.startswith("--")]
    word = (long_names[0] if long_names else param.name).lstrip("-").split("-")[-1]
    return word.upper()


def _argument_name(param: Any) -> str:
    name = param.metavar or param.name
    name = re.sub(r"[{}\[\]]|\.\.\.", "", name)
    return name.upper() if name.islower() or "_" in name else name


def _tidy_argument(param: Any) -> None:
    name = _argument_name(param)
    param.metavar = name
    repeated = param.nargs != 1
    usage = f"{name}..." if repeated else name
    if not param.required:
        usage = f"[{name}]..." if repeated else f"[{name}]"
    param._usage_display_name = lambda usage=usage: usage  # typer's usage-line hook
    param.make_metavar = lambda *a, usage=usage, **k: usage
    param.display_type_rich = lambda *a, **k: None  # no "<str>" beside the name


def _short_help(command: Any) -> str | None:
    text = (command.help or "").strip()
    if not text:
        return None
    first = text.split("\n\n", 1)[0].replace("\n", " ")
    first = re.split(r"(?<=[.;])\s", first, maxsplit=1)[0].rstrip(".;")
    return " ".join(first.split())


def _no_hyphen_breaks() -> None:
    """Wrap help text at spaces only, so ``--resume`` or ``SLURM_ARRAY_TASK_ID`` is never cut
    after its hyphen (the help formatter imports its TextWrapper on every call)."""
    import importlib

    for name in ("typer._click._textwrap", "click._textwrap"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        base = module.TextWrapper
        if getattr(base, "_diffaug", False):
            return

        class NoHyphenWrapper(base):  # type: ignore[misc, valid-type]
            _diffaug = True

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["break_on_hyphens"] = False
                super().__init__(*args, **kwargs)

        module.TextWrapper = NoHyphenWrapper
        return


def tidy(command: Any) -> Any:
    """Apply the conventions of the module docstring to ``command`` and every sub-command;
    returns ``command``."""
    _no_hyphen_breaks()
    for param in command.params:
        if param.param_type_name == "argument":
            _tidy_argument(param)
        elif param.param_type_name == "option" and not param.is_flag and not param.count:
            if param.metavar is None or param.metavar.startswith("<"):
                param.metavar = _option_metavar(param)
    if command.short_help is None:
        command.short_help = _short_help(command)
    group = getattr(command, "commands", None)
    settings = getattr(command, "context_settings", None) or {}
    if settings.get("allow_extra_args") and group is None:
        command.options_metavar = "ARGS... [OPTIONS]"
    for sub in (group or {}).values():
        tidy(sub)
    return command
