"""``diffaug config``: every configuration key, its default in a preset, range and meaning."""

from __future__ import annotations

import typer


def config(
    preset: str = typer.Option("default", "--preset", metavar="NAME",
                               help="Show the defaults of this preset: tiny, default or paper."),
    modality: str = typer.Option("dna", "--modality", metavar="NAME",
                                 help="The preset family: dna, image or tabular."),
    keys: str | None = typer.Option(None, "--keys", metavar="PATTERN",
                                    help="Only keys matching PATTERN: a glob (bank.*) or a "
                                    "part of the name (lr)."),
) -> None:
    """List every configuration key with its default, valid values and meaning.

    Set a key with `diffaug fit ... --set KEY=VALUE` or in a --config YAML file.
    """
    import shutil

    from diffaug_genomics.config_help import format_keys, list_keys

    width = min(100, max(60, shutil.get_terminal_size((80, 24)).columns))
    lines = list_keys(preset, modality, keys)
    family = "" if modality == "dna" else f" ({modality} family)"
    typer.echo(f"# {len(lines)} keys, defaults of preset '{preset}'{family}")
    typer.echo(format_keys(lines, width))
