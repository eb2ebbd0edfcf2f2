"""``diffaug fit``: resolve the configuration, prepare the run directory and data, train.

Run directory layout::

    config.yaml        resolved configuration + seed, versions, world size, input
    data.h5            the encoded input (only when fit was given FASTA)
    preprocess.json    images and tables: the fitted preprocessing (scaling, size, features)
    checkpoints/       latest.pt (after every unit), warmup.pt, round{r}.pt
    cache/             kNN neighbours, the bank of generated positives
    metrics.csv        one row per logged step
    log.txt            the log
    encoder.pt         final encoder + projection head   (written last: marks a finished run)
    generator.pt       final EMA denoiser (diffaug only)
"""

from __future__ import annotations

import logging
import platform
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from diffaug_genomics._version import __version__
from diffaug_genomics.config import Config, config_from_dict, dump_yaml, load_yaml, resolve_config
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5 import is_hdf5
from diffaug_genomics.progress import LOG

PREEMPTED_EXIT_CODE = 75
"""Exit code of a run stopped by SIGTERM/SIGUSR1 after writing its checkpoint (EX_TEMPFAIL)."""


class Preempted(Exception):  # noqa: N818 - a state, reported by exit code
    """The run checkpointed and stopped because it was asked to (SIGTERM / SIGUSR1)."""


@dataclass
class FitResult:
    run_dir: Path
    config: Config
    seconds: float


def versions() -> dict[str, str]:
    import numpy
    import torch

    return {"diffaug_genomics": __version__, "torch": str(torch.__version__),
            "numpy": str(numpy.__version__), "python": platform.python_version()}


def prepare_data(source: str | Path, run_dir: Path, cfg: Config) -> Path:
    """The HDF5 file to train on: ``source`` itself, or FASTA encoded into ``run_dir/data.h5``."""
    if str(source) != "-":
        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=path)
        if path.is_dir():
            raise InputError("is a directory, expected FASTA or a diffaug HDF5 file", path=path)
        if is_hdf5(path):
            return path
    data = run_dir / "data.h5"
    if data.exists():
        return data
    from diffaug_genomics.encode import encode_fasta

    summary = encode_fasta(source, data, length=cfg.data.length, policy=cfg.data.policy,
                           stride=cfg.data.stride)
    LOG.info("encoded %s -> %s: %s", source, data, summary.line())
    return data


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    return handler


def fit(source: str | Path, run_dir: str | Path, *, preset: str = "default",
        config_file: str | Path | None = None, overrides: list[str] | None = None,
        seed: int | None = None, device: str | None = None, augment: str | None = None,
        resume: bool = False, modality: str | None = None, backbone: str | None = None,
        label_column: str | None = None, obs_key: str | None = None) -> FitResult:
    """Train a DiffAug encoder (and generator) on ``source``; see the module docstring.

    The modality is ``modality``, else the one a config layer names, else detected from the
    input (:func:`diffaug_genomics.samples.detect_modality`). ``backbone``
    (``package.module:factory``) registers a third-party modality first and selects it.
    ``label_column`` / ``obs_key`` name a CSV column / ``.h5ad`` obs key of labels (never
    features; fit does not use them).

    ``resume=True`` continues from ``checkpoints/latest.pt`` with the run's saved configuration
    (a run with no checkpoint yet simply starts). Raises :class:`Preempted` after checkpointing
    if SIGTERM or SIGUSR1 arrives.
    """
    import time

    import torch

    from diffaug_genomics.inputs import load_rows
    from diffaug_genomics.models.registry import get_modality
    from diffaug_genomics.samples import ReadOptions, choose_modality, prepare_rows
    from diffaug_genomics.train.distributed import env_context, resolve_device
    from diffaug_genomics.train.loop import RunPaths, StopRequested, Trainer

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    modality, family, detect = choose_modality(source, modality, backbone)
    cfg = resolve_config(preset, config_file, overrides, seed=seed, device=device, augment=augment,
                         modality=modality, default_modality=detect, preset_family=family)
    if resume and paths.config.exists():
        saved = config_from_dict(load_yaml(paths.config))
        if (config_file or overrides or seed is not None or augment) and saved.hash() != cfg.hash():
            LOG.warning("--resume: using the run's saved config.yaml; the options given now differ")
        cfg = saved
    elif paths.encoder.exists() or paths.latest.exists():
        raise InputError("run directory already holds a run (use --resume to continue it, or "
                         "choose another -o)", path=run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("run directory path is a file", path=run_dir)
    ctx = env_context()
    dev = resolve_device(cfg.device, ctx)
    modality = get_modality(cfg.modality)
    from diffaug_genomics.models.registry import validate_config

    validate_config(modality, cfg)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        (run_dir / "cache").mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create run directory ({exc.strerror})", path=run_dir) from None
    handler = _attach_log(run_dir) if ctx.is_main else None
    try:
        if modality.io is None:
            data_path = prepare_data(source, run_dir, cfg)
            rows, _, _, attrs = load_rows(data_path)
            what = f"{len(rows)} sequences of {rows.shape[1]} bp"
        else:  # images, tables, plugins
            rows, data_path, attrs = prepare_rows(source, run_dir, cfg, modality, ReadOptions(
                label_column, obs_key)), source, {}
            what = f"{len(rows)} samples of shape {tuple(rows.shape[1:])}"
        if len(rows) < 4:
            raise InputError(f"needs at least 4 sequences to train, found {len(rows)}", path=source)
        record = {"input": str(source), "preset": preset, "versions": versions(),
                  "world_size": ctx.world_size,
                  "global_batch_size": cfg.optim.batch_size * ctx.world_size}
        if ctx.is_main:
            from diffaug_genomics.io.atomic import atomic_output

            with atomic_output(paths.config, force=True) as tmp:
                tmp.write_text(dump_yaml({**record, **cfg.to_dict()}))
        torch.manual_seed(cfg.seed)
        LOG.info("fit: %s from %s, modality=%s, augment=%s, device=%s, run dir %s", what,
                 data_path, modality.name, cfg.augment, dev, run_dir)
        stop = {"requested": False}

        def request_stop(signum: int, frame: FrameType | None) -> None:
            LOG.warning("received %s: checkpointing and stopping", signal.Signals(signum).name)
            stop["requested"] = True

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            trainer = Trainer(cfg, modality, rows, run_dir, dev, ctx,
                              should_stop=lambda: stop["requested"])
            if resume:
                trainer.resume()
            try:
                trainer.run()
            except StopRequested:
                raise Preempted(f"{run_dir}: stopped by signal after writing a checkpoint; "
                                "continue with --resume") from None
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        del attrs
    finally:
        if handler is not None:
            LOG.removeHandler(handler)
            handler.close()
    return FitResult(run_dir, cfg, time.perf_counter() - t0)
