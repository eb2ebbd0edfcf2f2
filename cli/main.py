"""Entry point of the ``diffaug`` command: builds the Typer app and maps errors to exit codes.

Exit codes: 0 success, 2 bad input or usage (one line on stderr naming file, record, reason),
1 any other failure, 130 interrupted.
"""

from __future__ import annotations

import sys

import typer
from diffaug_genomics_cli import commands

from diffaug_genomics._version import __version__

app = typer.Typer(
    name="diffaug",
    help="DiffAug for genomics: diffusion-generated positives for contrastive sequence embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
commands.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diffaug-genomics {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """DiffAug for genomics."""


OPTIONAL_VALUES = {"--resume": ("auto",)}
"""Options that take a value only when one of these words follows (``--resume [auto]``); the
vendored click parser has no optional values, so :func:`normalise_args` spells them out."""


def normalise_args(argv: list[str]) -> list[str]:
    """``--resume auto`` -> ``--resume=auto`` and a bare ``--resume`` -> ``--resume=yes`` (up to
    a ``--``), so that ``--resume`` works with or without its value anywhere on the line."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + argv[i:]
        if token in OPTIONAL_VALUES:
            if i + 1 < len(argv) and argv[i + 1] in OPTIONAL_VALUES[token]:
                out.append(f"{token}={argv[i + 1]}")
                i += 2
                continue
            token = f"{token}=yes"
        out.append(token)
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; library errors become one line on stderr and a meaningful exit code.

    Typer's standalone mode handles usage errors (exit 2), ``--help`` and success (exit 0);
    everything the library raises as :class:`DiffaugError` is caught here.
    """
    from diffaug_genomics.errors import DiffaugError

    try:
        app(args=normalise_args(sys.argv[1:] if argv is None else argv), prog_name="diffaug")
    except DiffaugError as exc:
        typer.echo(f"diffaug: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("diffaug: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `diffaug generate ... -o - | head`
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()
