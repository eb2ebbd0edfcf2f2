"""Entry point of the ``diffaug`` command: builds the Typer app and maps errors to exit codes.

Exit codes: 0 success, 2 bad input or usage (one line on stderr naming file, record, reason),
1 any other failure (a full disk included), 130 interrupted, 128 + N terminated by signal N
(SIGTERM, SIGHUP) while writing.
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
    rich_markup_mode=None,
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


def command() -> object:
    """The click command tree of :data:`app` with help that reads at 80 columns
    (:func:`~diffaug_genomics_cli.help_format.tidy`)."""
    from diffaug_genomics_cli.help_format import tidy

    return tidy(typer.main.get_command(app))


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
    """Run the CLI; every error becomes one line on stderr and a meaningful exit code.

    Usage errors of the argument parser (a missing argument, a value out of an option's
    range) are one line and exit 2, like bad input; everything the library raises as
    :class:`DiffaugError` is caught here; a full disk anywhere is one line and exit 1;
    SIGTERM / SIGHUP while an output is written (:class:`Terminated`, raised by the atomic
    writer after removing its temporary file) exits with 128 + the signal number.
    """
    from typer import Abort

    from diffaug_genomics.errors import DiffaugError, Terminated
    from diffaug_genomics.io.atomic import is_disk_full

    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover - typer releases that use click itself
        from click.exceptions import ClickException, NoArgsIsHelpError

    try:
        code = command().main(args=normalise_args(sys.argv[1:] if argv is None else argv),
                              prog_name="diffaug", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)
        sys.exit(2)
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (try '{ctx.command_path} -h')" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
        typer.echo(f"diffaug: error: {where}{message}{hint}", err=True)
        sys.exit(exc.exit_code)
    except DiffaugError as exc:
        typer.echo(f"diffaug: error: {' '.join(str(exc).splitlines())}", err=True)
        sys.exit(exc.exit_code)
    except Abort as exc:  # the parser's name for an EOFError nobody caught (input ended early)
        cause = exc.__cause__
        typer.echo(f"diffaug: error: unexpected end of input ({cause or 'aborted'})", err=True)
        sys.exit(1)
    except Terminated as exc:
        typer.echo(f"diffaug: {exc}; no output was left half-written", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        typer.echo("diffaug: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `diffaug generate ... -o - | head`
        sys.stderr.close()
        sys.exit(0)
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc):
            raise
        name = getattr(exc, "filename", None)
        typer.echo(f"diffaug: error: no space left on device{f' writing {name}' if name else ''}",
                   err=True)
        sys.exit(1)
    if code == 130:  # the parser turned a KeyboardInterrupt into Exit(130)
        typer.echo("diffaug: interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
