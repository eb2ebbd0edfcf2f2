"""``diffaug fit``: train a DiffAug encoder (and generator) on FASTA or one-hot HDF5."""

from __future__ import annotations

from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


def fit(
    source: str = typer.Argument(..., metavar="INPUT", help="FASTA (plain/gzip, '-' for stdin) or HDF5 from `diffaug encode`; an image folder, .npy (N, H, W[, C]) or image HDF5; CSV/TSV, .npy (N, D) or .h5ad. The modality is detected from it."),
    output: Path = typer.Option(..., "-o", "--output", help="Run directory to create (or resume)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config overriding the preset."),
    preset: str = typer.Option("default", "--preset", metavar="NAME", help="tiny | default | paper (`diffaug config --preset NAME` lists its values)."),
    overrides: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config key, e.g. encoder.width=256 (repeatable; `diffaug config` lists the keys)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for data order, initialisation and sampling (default 0)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | mps."),
    precision: str | None = typer.Option(None, "--precision", help="auto | fp32 | bf16: bfloat16 autocast of the models' forward passes (auto: where the device computes bfloat16 natively; default auto)."),
    compile_: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the models (falls back to eager with one warning when compiling fails; default off)."),
    resume: str | None = typer.Option(None, "--resume", metavar="[auto]", help="Continue from the run's latest checkpoint; '--resume auto' starts a new run when there is none (requeued jobs)."),
    augment: str | None = typer.Option(None, "--augment", help="diffaug | knn-mixup | handcrafted."),
    export: str | None = typer.Option(None, "--export", help="best | final: export the encoder state (the start or an encoder stage's end) that scores best on the label-free export.criterion, or the last one (default best)."),
    modality: str | None = typer.Option(None, "--modality", help="dna | image | tabular | a plugin's name: overrides detection from INPUT."),
    backbone: str | None = typer.Option(None, "--backbone", help="package.module:factory returning a Modality (third-party code, imported on your request)."),
    label_column: str | None = typer.Option(None, "--label-column", help="CSV/TSV: column of labels, never a feature."),
    obs_key: str | None = typer.Option(None, "--obs-key", help=".h5ad: obs column of labels."),
    threads: int | None = threads_option(),
) -> None:
    """Train an encoder with DiffAug (or a baseline augmentation) and save it in a run directory."""
    from diffaug_genomics.errors import DiffaugError, InputError
    from diffaug_genomics.fit import PREEMPTED_EXIT_CODE, Preempted
    from diffaug_genomics.fit import fit as run_fit
    from diffaug_genomics.progress import LOG

    if resume not in (None, "yes", "auto"):
        raise InputError(f"--resume takes no value or 'auto' (got {resume!r})")
    start(threads)
    from diffaug_genomics.input_kinds import FAILED_RUN, classify, require_training_input

    require_training_input(source)
    earlier = classify(output)
    if earlier.name == FAILED_RUN and not resume:
        LOG.warning("%s: is %s; starting afresh", output, earlier.phrase)
    if export is not None:  # the config key export.choose (checked with the others)
        overrides = [*(overrides or []), f"export.choose={export}"]
    try:
        result = run_fit(source, output, preset=preset, config_file=config, overrides=overrides,
                         seed=seed, device=device, augment=augment,
                         resume={None: False, "yes": True, "auto": "auto"}[resume],
                         modality=modality, backbone=backbone, label_column=label_column,
                         obs_key=obs_key, precision=precision, compile=compile_)
    except Preempted as exc:
        if exc.rank == 0:
            LOG.warning("%s", exc)
        raise typer.Exit(PREEMPTED_EXIT_CODE) from None
    except DiffaugError:
        raise
    if result.rank == 0:
        LOG.info("fit finished in %.1f s: %s", result.seconds, result.run_dir)
        LOG.info("look at the run: diffaug report %s  (writes %s)", result.run_dir,
                 result.run_dir / "report.html")
