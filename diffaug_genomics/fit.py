"""``diffaug fit``: resolve the configuration, prepare the run directory and data, train.

The run directory's layout: :mod:`diffaug_genomics.run_files`.

Under torchrun or srun (see :mod:`diffaug_genomics.train.distributed`) every rank runs this
function: rank 0 creates the run directory, encodes FASTA input and writes every file while the
others wait; their log lines below WARNING are dropped. SIGTERM or SIGUSR1 on any rank makes all
ranks stop at the same step; rank 0 writes the checkpoint and every rank raises
:class:`Preempted` (exit code 75).
"""

from __future__ import annotations

import logging
import platform
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from diffaug_genomics._version import __version__
from diffaug_genomics.config import Config, config_from_dict, dump_yaml, load_yaml, resolve_config
from diffaug_genomics.errors import DiffaugError, InputError
from diffaug_genomics.fit_lock import one_writer, ranks_agree
from diffaug_genomics.progress import LOG
from diffaug_genomics.run_cleanup import remove_new_run_dir
from diffaug_genomics.run_files import INPUT_FILES, RunPaths

if TYPE_CHECKING:
    import torch

    from diffaug_genomics.io.samples import ReadOptions
    from diffaug_genomics.modalities.base import Modality
    from diffaug_genomics.train.distributed import DistContext

PREEMPTED_EXIT_CODE = 75
"""Exit code of a run stopped by SIGTERM/SIGUSR1 after writing its checkpoint (EX_TEMPFAIL)."""


class Preempted(Exception):  # noqa: N818 - a state, reported by exit code
    """The run checkpointed and stopped because it was asked to (SIGTERM / SIGUSR1)."""

    def __init__(self, message: str, rank: int = 0) -> None:
        super().__init__(message)
        self.rank = rank


@dataclass
class FitResult:
    run_dir: Path
    config: Config
    seconds: float
    rank: int = 0
    world_size: int = 1


def versions() -> dict[str, str]:
    import numpy
    import torch

    return {"diffaug_genomics": __version__, "torch": str(torch.__version__),
            "numpy": str(numpy.__version__), "python": platform.python_version()}


def input_fingerprint(source: str | Path) -> dict[str, object]:
    """What identifies a training input, recorded in config.yaml: ``input_bytes`` and
    ``input_sha256`` of the file (of every file, with its relative path, for a folder of
    images); empty for standard input, which cannot be read twice."""
    import hashlib

    if str(source) == "-":
        return {}
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    files = sorted((p for p in path.rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(path).as_posix()) if path.is_dir() else [path]
    digest, size = hashlib.sha256(), 0
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
                size += len(block)
    return {"input_bytes": size, "input_sha256": digest.hexdigest()}


def _check_same_input(source: str | Path, run_dir: Path, saved: dict,
                      fingerprint: dict[str, object]) -> None:
    """``--resume`` continues only on the input the run was started on."""
    if "input_sha256" not in saved:
        LOG.warning("%s: config.yaml records no checksum of the input (a run of an older "
                    "version): cannot check that %s is the original input", run_dir, source)
        return
    if not fingerprint:
        raise InputError("--resume cannot check standard input against the run's input: give "
                         f"the original file ({saved.get('input')})", path=run_dir)
    if (fingerprint["input_sha256"], fingerprint["input_bytes"]) != (
            saved["input_sha256"], saved.get("input_bytes")):
        raise InputError(f"is not the input this run was started on ({saved.get('input')}: "
                         f"{saved.get('input_bytes')} bytes, sha256 "
                         f"{str(saved['input_sha256'])[:12]}...; this one: "
                         f"{fingerprint['input_bytes']} bytes, sha256 "
                         f"{str(fingerprint['input_sha256'])[:12]}...): resume with the "
                         "original input or start a new run", path=source)


class _RunLog(logging.FileHandler):
    """``log.txt``: a line that cannot be written (a full disk) is dropped, not printed as a
    traceback; every line also goes to stderr, and the error that matters is raised where the
    run writes its outputs."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # flushing the last lines onto a full disk
            pass


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = _RunLog(RunPaths(run_dir).log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    return handler


@contextmanager
def _rank_logging(is_main: bool) -> Iterator[None]:
    """Only warnings and errors from ranks other than 0."""
    level = LOG.level
    if not is_main:
        LOG.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        LOG.setLevel(level)


@one_writer  # rank 0 holds the run directory's lock (run_lock) until fit returns or fails
def fit(source: str | Path, run_dir: str | Path, *, preset: str = "default",
        config_file: str | Path | None = None, overrides: list[str] | None = None,
        seed: int | None = None, device: str | None = None, augment: str | None = None,
        resume: bool | str = False, modality: str | None = None, backbone: str | None = None,
        label_column: str | None = None, obs_key: str | None = None,
        precision: str | None = None, compile: bool | None = None) -> FitResult:
    """Train a DiffAug encoder (and generator) on ``source``; see the module docstring.

    The modality is ``modality``, else the one a config layer names, else detected from the
    input (:func:`diffaug_genomics.modalities.detect.detect_modality`). ``backbone``
    (``package.module:factory``) registers a third-party modality first and selects it.
    ``label_column`` / ``obs_key`` name a CSV column / ``.h5ad`` obs key of labels (never
    features; fit does not use them). ``precision`` / ``compile`` set those config keys
    (None: the config's); being how a run computes, not what, they also apply to a resumed run.

    ``resume=True`` continues from ``checkpoints/latest.pt`` with the run's saved configuration;
    a run directory killed before its first checkpoint simply starts again, and a run directory
    that does not exist is an error (a mistyped path). ``resume="auto"`` also starts a new run
    when the directory does not exist yet (for requeued jobs). Raises :class:`Preempted` after
    checkpointing if SIGTERM or SIGUSR1 arrives.
    """
    import time

    from diffaug_genomics.io.samples import ReadOptions
    from diffaug_genomics.modalities.registry import choose_modality, get_modality
    from diffaug_genomics.train.distributed import env_context, process_group, resolve_device
    t0 = time.perf_counter()
    if resume not in (False, True, "auto"):
        raise InputError(f"resume must be False, True or 'auto' (got {resume!r})")
    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    modality, family, detect = choose_modality(source, modality, backbone)
    execution = {k: v for k, v in (("precision", precision), ("compile", compile))
                 if v is not None}
    cfg = resolve_config(preset, config_file, overrides, seed=seed, device=device, augment=augment,
                         modality=modality, default_modality=detect, preset_family=family,
                         **execution)
    if resume is True and not run_dir.is_dir():
        raise InputError("nothing to resume: no such run directory (use --resume auto to start "
                         "a new run when there is none)", path=run_dir)
    resuming = bool(resume) and paths.latest.exists()
    saved_record: dict = {}
    if resume and run_dir.is_dir() and not resuming:
        LOG.warning("%s: no checkpoint yet (killed before the first one?): starting the run "
                    "from the beginning with the options given now", run_dir)
    if resuming:
        if not paths.config.exists():
            raise InputError("has checkpoints/latest.pt but no config.yaml: cannot resume",
                             path=run_dir)
        saved_record = load_yaml(paths.config)
        saved = config_from_dict({**saved_record, **execution})
        if (config_file or overrides or seed is not None or augment) and saved.hash() != cfg.hash():
            LOG.warning("--resume: using the run's saved config.yaml; the options given now differ")
        cfg = saved
        label_column = label_column or saved_record.get("label_column")
        obs_key = obs_key or saved_record.get("obs_key")
    elif paths.holds_run():
        raise InputError("run directory already holds a run (use --resume to continue it, or "
                         "choose another -o)", path=run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("run directory path is a file", path=run_dir)
    ctx = env_context()
    dev = resolve_device(cfg.device, ctx)
    modality = get_modality(cfg.modality)
    from diffaug_genomics.modalities.registry import validate_config

    validate_config(modality, cfg)
    options = ReadOptions(label_column, obs_key)
    with process_group(ctx, dev), _rank_logging(ctx.is_main), \
            remove_new_run_dir(run_dir, ctx.is_main):
        ranks_agree(run_dir, ctx)  # every rank stops here if rank 0 could not take the lock
        try:
            _train(source, run_dir, cfg, preset, modality, ctx, dev, resuming, options,
                   saved_record)
        except OSError as exc:
            from diffaug_genomics.io.atomic import DiskFull, is_disk_full

            if is_disk_full(exc):  # a write outside the atomic writer (metrics.csv)
                raise DiskFull(run_dir) from None
            raise
        except RuntimeError as exc:
            if not (ctx.distributed and _communication_error(exc)):
                raise
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
            raise DiffaugError(f"rank {ctx.rank} of {ctx.world_size}: lost contact with the other "
                               f"ranks ({first}); one of them probably failed first, see its "
                               "error") from None
    return FitResult(run_dir, cfg, time.perf_counter() - t0, ctx.rank, ctx.world_size)


def _add_to_record(path: Path, **items: object) -> None:
    """Add ``items`` to the record part of a run's ``config.yaml`` (rewritten atomically)."""
    from diffaug_genomics.io.atomic import atomic_output

    record = {**load_yaml(path), **items}
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(dump_yaml(record))


def _communication_error(exc: BaseException) -> bool:
    """True for errors of torch.distributed collectives (a peer died, a timeout)."""
    import traceback

    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    if any(word in text for word in ("gloo", "NCCL", "Connection closed", "Connection reset")):
        return True
    return any("torch/distributed/" in frame.filename.replace("\\", "/")
               for frame in traceback.extract_tb(exc.__traceback__))


def _train(source: str | Path, run_dir: Path, cfg: Config, preset: str, modality: Modality,
           ctx: DistContext, dev: torch.device, resume: bool, options: ReadOptions,
           saved_record: dict) -> None:
    """Everything after the process group is up (on every rank): rank 0 makes the run
    directory and data, writes config.yaml; then the training loop.

    Without ``resume`` nothing a failed run left (``data.h5``, ``preprocess.json``) is reused.
    With it the input must be the one the run was started on (:func:`input_fingerprint`,
    recorded in config.yaml), else :class:`InputError`."""
    import torch

    from diffaug_genomics.train.distributed import barrier
    from diffaug_genomics.train.loop import StopRequested, Trainer

    paths = RunPaths(run_dir)
    if ctx.is_main:
        try:
            for folder in paths.folders:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create run directory ({exc.strerror})", path=run_dir) from None
        from diffaug_genomics.io.atomic import remove_stale_temps

        for folder in paths.folders:
            only = INPUT_FILES if folder == run_dir else None  # not embed's, report's
            for stale in remove_stale_temps(folder, only):
                LOG.info("removed %s, left by an interrupted write", stale)
    fingerprint = input_fingerprint(source)
    if resume:
        _check_same_input(source, run_dir, saved_record, fingerprint)
    handler = _attach_log(run_dir) if ctx.is_main else None
    try:
        io = modality.io  # rank 0 prepares (encodes FASTA, fits the preprocessing) first
        if ctx.is_main:
            data = io.training_data(modality.name, source, run_dir, cfg, options, reuse=resume)
        barrier()  # the others read the data.h5 / preprocess.json rank 0 wrote
        if not ctx.is_main:
            data = io.training_data(modality.name, source, run_dir, cfg, options, reuse=True)
        rows, data_path, what = data.rows, data.path, data.what
        if len(rows) < 4:
            raise InputError(f"needs at least 4 sequences to train, found {len(rows)}", path=source)
        from diffaug_genomics.train.autotune import tune

        tuned = tune(cfg, modality, rows, dev, ctx, saved_record if resume else None)
        per_rank = min(tuned.config.optim.batch_size, len(rows) // ctx.world_size)
        record = {"input": str(source), "preset": preset, "versions": versions(),
                  "world_size": ctx.world_size,
                  "global_batch_size": per_rank * ctx.world_size, **tuned.record, **fingerprint,
                  "label_column": options.label_column, "obs_key": options.obs_key}
        if resume:  # the input was checked to be the original: keep what was recorded
            record.update({k: saved_record[k] for k in ("input", "preset")
                           if k in saved_record})
        if ctx.is_main:
            from diffaug_genomics.io.atomic import atomic_output

            with atomic_output(paths.config, force=True) as tmp:
                tmp.write_text(dump_yaml({**record, **cfg.to_dict()}))
        torch.manual_seed(cfg.seed)
        LOG.info("fit: %s from %s, modality=%s, augment=%s, device=%s, run dir %s", what,
                 data_path, modality.name, cfg.augment, dev, run_dir)
        stop = {"requested": False}

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if not stop["requested"]:  # under torchrun a signal may arrive twice
                LOG.warning("received %s: checkpointing and stopping", signal.Signals(signum).name)
            stop["requested"] = True

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            trainer = Trainer(tuned.config, modality, rows, run_dir, dev, ctx,
                              should_stop=lambda: stop["requested"], precision=tuned.precision)
            if resume:
                try:
                    trainer.resume()
                except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
                    if isinstance(exc, RuntimeError) and _communication_error(exc):
                        raise
                    from diffaug_genomics.train.checkpoint import describe

                    raise InputError(f"does not fit this run ({describe(exc)})",
                                     path=paths.latest) from None
            if ctx.is_main:  # after resume: a run from before the discovery keeps none
                _add_to_record(paths.config,
                               discovered_symmetry=trainer.progress.symmetry.to_record(),
                               start=getattr(trainer.models.encoder, "start_record", None) or None)
            try:
                trainer.run()
                if ctx.is_main:
                    _add_to_record(paths.config, exported=trainer.progress.export.record())
            except StopRequested:
                raise Preempted(f"{run_dir}: stopped by signal after writing a checkpoint; "
                                "continue with --resume", ctx.rank) from None
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    finally:
        if handler is not None:
            LOG.removeHandler(handler)
            handler.close()
