"""What a run directory says about itself: configuration, progress, checkpoints and metrics.

Nothing here imports torch at module level or writes anything: :func:`read_run` only reads
``config.yaml``, ``metrics.csv``, ``log.txt``, the file listing, the run directory's lock (is a
``fit`` writing it now?) and, for an unfinished run, ``checkpoints/latest.pt`` once: its
progress record and its encoder come from the same file, never from two checkpoints.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.errors import Busy, InputError
from diffaug_genomics.lock_holder import Holder, lock_state
from diffaug_genomics.metrics import BASE_FIELDS, DIAGNOSTIC_FIELDS
from diffaug_genomics.run_files import RunPaths

NUMERIC_FIELDS = [f for f in BASE_FIELDS + DIAGNOSTIC_FIELDS if f != "phase"]
PHASES = ("init", "warmup", "encoder", "generator", "bank")


@dataclass
class Metrics:
    """``metrics.csv`` as columns: ``phase`` (strings) and one float array per numeric column
    (NaN where empty). ``columns`` lists the header as found; ``diagnostics`` says whether the
    header has the diagnostics columns."""

    phase: np.ndarray
    values: dict[str, np.ndarray]
    columns: list[str]
    loss_empty: np.ndarray
    """True where the loss cell is empty (a diagnostic row), not where it is ``nan`` (a step
    whose loss diverged, or a first bank refresh)."""

    def __len__(self) -> int:
        return len(self.phase)

    @property
    def diagnostics(self) -> bool:
        return all(c in self.columns for c in DIAGNOSTIC_FIELDS)

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "phase":
            return self.phase
        return self.values.get(name, np.full(len(self.phase), np.nan))

    def rows(self, mask: np.ndarray) -> Metrics:
        return Metrics(self.phase[mask], {k: v[mask] for k, v in self.values.items()},
                       self.columns, self.loss_empty[mask])

    def steps(self, *phases: str) -> Metrics:
        """Training-step rows (a loss value) of the given phases."""
        return self.rows(np.isin(self.phase, phases) & ~self.loss_empty)

    def diagnostic_rows(self, *phases: str) -> Metrics:
        """Diagnostic rows (empty loss) of the given phases (``init``, encoder phases,
        ``generator``)."""
        return self.rows(np.isin(self.phase, phases) & self.loss_empty)


def read_metrics(path: str | Path, in_progress: bool = False) -> Metrics:
    """Parse ``metrics.csv``; :class:`InputError` (exit 2) for an empty, truncated or foreign
    file, naming the line. ``in_progress`` (a ``fit`` is appending to it): a last line not
    written completely yet is left out."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no metrics.csv: the run has not logged anything yet", path=path.parent)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable ({exc.__class__.__name__})", path=path) from None
    if in_progress and "\n" in text and not text.endswith("\n"):
        text = text[:text.rindex("\n") + 1]  # the row being appended right now
    lines = list(csv.reader(text.splitlines()))
    if not lines or not any(lines[0]):
        raise InputError("empty file (no header)", path=path)
    header = [h.strip() for h in lines[0]]
    if header[:len(BASE_FIELDS)] != BASE_FIELDS:
        raise InputError(f"not a diffaug metrics file: header starts {','.join(header[:8])!r}, "
                         f"expected {','.join(BASE_FIELDS)!r}", path=path, line=1)
    body = lines[1:]
    if not body:
        raise InputError("no rows after the header (the run has not logged a step yet)",
                         path=path)
    if not text.endswith("\n"):
        raise InputError("truncated: the last line is incomplete", path=path, line=len(lines))
    phases: list[str] = []
    empty: list[bool] = []
    cols: dict[str, list[float]] = {h: [] for h in header if h != "phase"}
    for lineno, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(f"truncated or malformed row: {len(row)} fields, the header has "
                             f"{len(header)}", path=path, line=lineno)
        for name, cell in zip(header, row, strict=True):
            if name == "loss":
                empty.append(not cell.strip())
            if name == "phase":
                if cell not in PHASES:
                    raise InputError(f"unknown phase {cell!r}", path=path, line=lineno)
                phases.append(cell)
                continue
            try:
                cols[name].append(float(cell) if cell.strip() else math.nan)
            except ValueError:
                raise InputError(f"column {name}: not a number: {cell!r}", path=path,
                                 line=lineno) from None
    values = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    return Metrics(np.asarray(phases, dtype=object), values, header,
                   np.asarray(empty, dtype=bool))


@dataclass
class StageInfo:
    """One stage of the run's schedule and how far it got."""

    kind: str
    round: int
    units: int
    done_units: int
    seconds: float | None


@dataclass
class RunState:
    """A run directory as the report sees it."""

    root: Path
    config: dict[str, Any]
    config_text: str
    config_hash: str
    modality: str
    augment: str
    embed_dim: int
    world_size: int
    metrics: Metrics
    finished: bool
    status: str
    """One sentence: finished / in progress / stopped, and the stage reached."""
    stages: list[StageInfo]
    checkpoints: list[tuple[str, int, float]]
    """(file relative to the run, bytes, modification time) of every checkpoint-like file."""
    data_rows: int | None = None
    sample_shape: tuple[int, ...] | None = None
    progress: dict[str, Any] | None = None
    latest: dict[str, Any] | None = None
    """The ``encoder`` and ``head`` weights of ``latest.pt``, read with :attr:`progress`."""
    writer: Holder | None = None
    """The ``fit`` writing the run right now (its lock's holder), if any."""
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> RunPaths:
        """The run's files."""
        return RunPaths(self.root)

    @property
    def has_generator(self) -> bool:
        return self.augment == "diffaug"


def read_run(run_dir: str | Path) -> RunState:
    """Read a run directory; :class:`InputError` if it is not one (no ``config.yaml``) or its
    ``metrics.csv`` is missing, empty or truncated."""
    import yaml

    from diffaug_genomics.config import config_from_dict
    from diffaug_genomics.train.schedule import plan

    root = Path(run_dir)
    if not root.is_dir():
        raise InputError("not a directory (expected a run directory written by diffaug fit)",
                         path=root)
    paths = RunPaths(root)
    if not paths.config.is_file():
        raise InputError("not a run directory: no config.yaml (written by diffaug fit)",
                         path=root)
    text = paths.config.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict):
            raise ValueError("not a mapping")
        cfg = config_from_dict(raw)
    except InputError as exc:
        raise InputError(f"config.yaml: {exc}", path=root) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"unreadable config.yaml ({exc.__class__.__name__})", path=root) from None
    holder, stale = lock_state(root)
    writer = holder if holder is not None and stale is None else None
    if writer is not None and not paths.metrics.is_file():
        raise Busy(f"{root}: the run is in progress but has logged nothing yet (being written "
                   f"by {writer.describe()}); try again in a moment")
    metrics = read_metrics(paths.metrics, in_progress=writer is not None)
    finished = paths.encoder.is_file()
    progress, latest = (None, None) if finished else _read_latest(paths.latest,
                                                                   writer is not None)
    stages = _stages(plan(cfg), metrics, progress, finished)
    state = RunState(
        root=root, config=raw, config_text=text, config_hash=cfg.hash(), modality=cfg.modality,
        augment=cfg.augment, embed_dim=int(cfg.encoder.embed_dim),
        world_size=int(raw.get("world_size", 1) or 1), metrics=metrics, finished=finished,
        status="", stages=stages, checkpoints=_checkpoint_files(paths), progress=progress,
        latest=latest, writer=writer)
    state.data_rows, state.sample_shape = _data_size(paths, raw, cfg.modality)
    state.status = _status(state, paths, holder, stale)
    return state


def load_whole(path: Path, fmt: str, in_progress: bool) -> dict[str, Any]:
    """A checkpoint-like file (:func:`~diffaug_genomics.train.checkpoint.load`) that a ``fit``
    in progress may replace (by a rename, so the file is always whole; on NFS a read that the
    rename overtakes fails): read again, up to 3 times, before reporting it unreadable."""
    from diffaug_genomics.train import checkpoint as ckpt

    for attempt in range(3 if in_progress else 1):
        try:
            return ckpt.load(path, fmt)
        except InputError:
            if attempt == 2 or not in_progress:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _read_latest(path: Path, in_progress: bool
                 ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(progress, {"encoder", "head"})`` of ``latest.pt``, from one read of one file;
    ``(None, None)`` when there is none or it cannot be read."""
    from diffaug_genomics.train.checkpoint import CHECKPOINT_FORMAT

    if not path.is_file():
        return None, None
    try:
        obj = load_whole(path, CHECKPOINT_FORMAT, in_progress)
    except InputError:
        return None, None
    weights = {k: obj[k] for k in ("encoder", "head") if k in obj}
    return dict(obj.get("progress", {})), weights or None


def _stages(schedule: list, metrics: Metrics, progress: dict[str, Any] | None,
            finished: bool) -> list[StageInfo]:
    """The schedule with units done and seconds per stage (from the metrics' time stamps)."""
    seconds = _stage_seconds(metrics)
    out = []
    for i, stage in enumerate(schedule):
        if finished:
            done = stage.units
        elif progress is not None:
            s, u = int(progress.get("stage", 0)), int(progress.get("unit", 0))
            done = stage.units if i < s else (u if i == s else 0)
        else:
            done = 0
        out.append(StageInfo(stage.kind, stage.round, stage.units, done,
                             seconds.get((stage.kind, stage.round))))
    return out


def _stage_seconds(metrics: Metrics) -> dict[tuple[str, int], float]:
    """Seconds attributed to each (phase, round): the time between consecutive rows goes to the
    later row's stage (a drop in ``time_s`` marks a resume and is not counted)."""
    t = metrics["time_s"]
    rnd = metrics["round"]
    out: dict[tuple[str, int], float] = {}
    prev = 0.0
    for i in range(len(t)):
        phase = str(metrics.phase[i])
        dt = t[i] - prev if t[i] >= prev else t[i]
        prev = t[i]
        if phase == "init" or math.isnan(dt):
            continue
        key = (phase, int(rnd[i]) if not math.isnan(rnd[i]) else 0)
        out[key] = out.get(key, 0.0) + max(dt, 0.0)
    return out


def _checkpoint_files(paths: RunPaths) -> list[tuple[str, int, float]]:
    names = list(paths.final_files)
    if paths.checkpoints.is_dir():
        names += sorted(p for p in paths.checkpoints.glob("*.pt"))
    out = []
    for p in names:
        if p.is_file():
            st = p.stat()
            out.append((str(p.relative_to(paths.root)), st.st_size, st.st_mtime))
    return out


def _data_size(paths: RunPaths, raw: dict[str, Any], modality: str
               ) -> tuple[int | None, tuple[int, ...] | None]:
    """(rows, shape of one row) of the training data, when cheaply known."""
    candidates = [paths.data]
    if raw.get("input"):
        candidates.append(Path(str(raw["input"])))
    if modality == "dna":
        import h5py

        from diffaug_genomics.io.h5 import is_hdf5

        for p in candidates:
            try:
                if p.is_file() and is_hdf5(p):
                    with h5py.File(p, "r") as f:
                        if "onehot" in f:
                            shape = f["onehot"].shape
                            return int(shape[0]), tuple(int(s) for s in shape[1:])
            except OSError:
                continue
    return None, None


def _status(state: RunState, paths: RunPaths, holder: Holder | None, stale: str | None) -> str:
    total = sum(s.units for s in state.stages)
    done = sum(s.done_units for s in state.stages)
    if state.finished:
        n = len(state.stages)
        return f"finished: all {n} stage{'s' if n != 1 else ''} ({total} units) done"
    newest = max([paths.metrics.stat().st_mtime] + [m for _, _, m in state.checkpoints])
    idle = time.time() - newest
    reached = next((s for s in state.stages if s.done_units < s.units), None)
    where = (f"reached stage {state.stages.index(reached) + 1} of {len(state.stages)} "
             f"({reached.kind}, round {reached.round}, unit {reached.done_units + 1} of "
             f"{reached.units}), {done} of {total} units done") if reached else \
        f"all {total} units done, final weights not written yet"
    if state.progress is None and paths.latest.is_file():
        where += " (latest.pt could not be read)"
    elif state.progress is None:
        last = state.metrics.phase[-1]
        where = f"no checkpoint yet; last logged phase: {last}"
    log = paths.log.read_text(encoding="utf-8", errors="replace") if paths.log.is_file() else ""
    signalled = None
    for line in reversed(log.strip().splitlines()[-200:]):
        if "received SIG" in line:
            signalled = line
            break
        if "resuming at stage" in line or ("INFO fit: " in line and "modality=" in line):
            break  # started or resumed since the last signal
    if state.writer is not None:
        return (f"in progress (being written by {state.writer.describe(time.time())}; last "
                f"written {_ago(idle)} ago): {where}")
    if holder is not None:  # its fit died without releasing its lock (kill -9, a lost node)
        return (f"stopped: {holder.describe()} ended without finishing ({stale}); resume with "
                f"diffaug fit --resume: {where}")
    if signalled is not None:
        sig = signalled.split("received ", 1)[1].split(":", 1)[0]
        return (f"stopped by {sig} after writing a checkpoint (continue with diffaug fit "
                f"--resume): {where}")
    return (f"stopped (no fit is writing it; last written {_ago(idle)} ago; resume with "
            f"diffaug fit --resume): {where}")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
