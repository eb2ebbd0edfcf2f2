"""Summaries of the files diffaug reads and writes (``diffaug inspect``): one-hot and
embeddings HDF5 in detail, and every other kind :mod:`diffaug_genomics.input_kinds` knows (run
directories, AnnData, FASTA, generated samples, checkpoints, JSON reports, tables...)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.errors import InputError

READ_ROWS = 8192
"""Rows of ``/onehot`` read per step while scanning (memory stays ~``READ_ROWS * L * 4`` bytes)."""


def _attrs(f: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        if name in f.attrs:
            value = f.attrs[name]
            out[name] = value.item() if isinstance(value, np.generic) else value
    return out


def _label_counts(f: Any) -> dict[str, int] | None:
    from diffaug_genomics.io.h5 import read_strings

    if "labels" not in f:
        return None
    return dict(sorted(Counter(read_strings(f["labels"])).items()))


def _summarize_onehot(path: str | Path) -> dict[str, Any]:
    from diffaug_genomics.io.h5 import ONEHOT_SCHEMA, open_onehot

    with open_onehot(path) as f:
        oh = f["onehot"]
        n, L = int(oh.shape[0]), int(oh.shape[1])
        lengths = np.asarray(f["lengths"][()], dtype=np.int64)
        gc_sum = gc_sq = 0.0
        gc_rows = called_total = 0
        for start in range(0, n, READ_ROWS):
            block = oh[start:start + READ_ROWS]
            if block.size and int(block.max()) > 1:
                raise InputError("corrupt: /onehot holds values other than 0 and 1", path=path)
            counts = block.sum(axis=1, dtype=np.int64)  # (rows, 4)
            called = counts.sum(axis=1)
            called_total += int(called.sum())
            have = called > 0
            gc = (counts[have, 1] + counts[have, 2]) / called[have]
            gc_sum += float(gc.sum())
            gc_sq += float((gc * gc).sum())
            gc_rows += int(have.sum())
        out: dict[str, Any] = {"path": str(path), "schema": ONEHOT_SCHEMA, "n": n, "length": L}
        out.update(_attrs(f, ("policy", "stride", "source", "source_sha256", "genome",
                              "tool_version", "created")))
        out["labels"] = _label_counts(f)
    total = int(lengths.sum())
    if n:
        q = np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 1.0])
        out["lengths"] = {"min": int(q[0]), "q25": float(q[1]), "median": float(q[2]),
                          "q75": float(q[3]), "max": int(q[4]), "mean": float(lengths.mean()),
                          "padded_rows": int((lengths < L).sum())}
    else:
        out["lengths"] = None
    mean = gc_sum / gc_rows if gc_rows else float("nan")
    var = max(gc_sq / gc_rows - mean * mean, 0.0) if gc_rows else float("nan")
    out["gc"] = {"mean": mean, "sd": float(np.sqrt(var))}
    out["n_fraction"] = (total - called_total) / total if total else 0.0
    return out


def _summarize_embeddings(path: str | Path) -> dict[str, Any]:
    import h5py

    from diffaug_genomics.io.h5 import EMBEDDINGS_SCHEMA

    with h5py.File(path, "r") as f:
        if "embeddings" not in f or "ids" not in f:
            raise InputError("corrupt: /embeddings or /ids is missing", path=path)
        emb = f["embeddings"]
        if emb.ndim != 2:
            raise InputError(f"corrupt: /embeddings has shape {emb.shape}, expected (N, D)",
                             path=path)
        out: dict[str, Any] = {"path": str(path), "schema": EMBEDDINGS_SCHEMA,
                               "n": int(emb.shape[0]), "dim": int(emb.shape[1])}
        out.update(_attrs(f, ("tool_version", "created", "run", "config_hash")))
        out["labels"] = _label_counts(f)
    return out


def summarize(path: str | Path) -> dict[str, Any]:
    """Summary of a diffaug HDF5 file as a plain dict.

    One-hot files (``onehot/1``): ``schema, n, length, policy, source, ..., labels`` (counts per
    label or None), ``lengths`` (min, q25, median, q75, max, mean, padded_rows), ``gc`` (mean and
    sd of per-row GC fraction over called bases) and ``n_fraction`` (N/IUPAC share of sequence
    positions). The one-hot data is scanned in blocks of :data:`READ_ROWS` rows.
    Embeddings files (``embeddings/1``): ``schema, n, dim, labels`` and provenance attributes.

    Raises:
        InputError: the file is missing, not HDF5, not a diffaug file, or corrupt.
    """
    from diffaug_genomics.io.h5 import EMBEDDINGS_SCHEMA, ONEHOT_SCHEMA, is_hdf5, schema_of

    p = Path(path)
    if not p.exists() or p.is_dir() or not is_hdf5(p):
        return describe_other(p)
    schema = schema_of(p)
    if schema not in (ONEHOT_SCHEMA, EMBEDDINGS_SCHEMA):
        return describe_other(p)
    try:
        if schema == ONEHOT_SCHEMA:
            return _summarize_onehot(p)
        if schema == EMBEDDINGS_SCHEMA:
            return _summarize_embeddings(p)
    except InputError:
        raise
    except Exception as exc:  # h5py raises many kinds on damaged data
        raise InputError(f"corrupt HDF5 file ({exc.__class__.__name__}: {exc})",
                         path=p) from None
    raise InputError(f"not a diffaug file (schema {schema!r}; expected {ONEHOT_SCHEMA!r} or "
                     f"{EMBEDDINGS_SCHEMA!r})", path=p)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for :func:`summarize`'s dict (what ``diffaug inspect`` prints)."""
    if "kind" in summary:
        return "\n".join(f"{key:<13} {value}" for key, value in summary.items()
                         if value is not None and value != "")
    lines = [f"file          {summary['path']}", f"schema        {summary['schema']}"]
    if "dim" in summary:
        lines.append(f"N x D         {summary['n']} x {summary['dim']}")
    else:
        lines.append(f"N x L         {summary['n']} x {summary['length']}")
    for key in ("policy", "stride", "source", "source_sha256", "genome", "tool_version",
                "created"):
        if summary.get(key) is not None:
            lines.append(f"{key:<13} {summary[key]}")
    if summary.get("lengths"):
        q = summary["lengths"]
        lines.append(f"lengths       min {q['min']}, q25 {q['q25']:g}, median {q['median']:g}, "
                     f"q75 {q['q75']:g}, max {q['max']}, mean {q['mean']:.1f}; "
                     f"{q['padded_rows']} rows padded")
    if "gc" in summary:
        lines.append(f"GC content    mean {summary['gc']['mean']:.4f}, sd {summary['gc']['sd']:.4f}")
        lines.append(f"N fraction    {summary['n_fraction']:.4f}")
    labels = summary.get("labels")
    if labels is None:
        lines.append("labels        none")
    else:
        lines.append(f"labels        {len(labels)} classes: "
                     + ", ".join(f"{k} {v}" for k, v in labels.items()))
    return "\n".join(lines)


# ------------------------------------------------------------------------- every other kind

def describe_other(path: Path) -> dict[str, Any]:
    """``{"path", "kind", ...}``: what :func:`~diffaug_genomics.input_kinds.classify` says the
    path is, and the few facts that matter for that kind (module docstring)."""
    from diffaug_genomics.input_kinds import FOLDER, MISSING, OTHER_HDF5, UNKNOWN, classify

    kind = classify(path)
    if kind.name == MISSING:
        raise InputError("no such file or folder", path=path)
    if kind.name in (FOLDER, OTHER_HDF5, UNKNOWN):
        raise InputError(f"is {kind.phrase}; inspect describes the files diffaug writes and "
                         "reads", path=path)
    out: dict[str, Any] = {"path": str(path), "kind": kind.phrase}
    describe = _DESCRIBERS.get(kind.name)
    if describe is not None:
        try:
            out.update(describe(path))
        except InputError:
            raise
        except Exception as exc:  # a damaged file: say so, as the readers would
            raise InputError(f"is {kind.phrase} but cannot be read ({exc.__class__.__name__}: "
                             f"{str(exc)[:200]})", path=path) from None
    return out


def _run(path: Path) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    from diffaug_genomics.run_files import METRICS, RunPaths

    paths = RunPaths(path)
    config = paths.config
    if config.is_file():
        cfg = yaml.safe_load(config.read_text()) or {}
        out.update({"modality": cfg.get("modality"), "augment": cfg.get("augment"),
                    "preset": cfg.get("preset"), "input": cfg.get("input"),
                    "world size": cfg.get("world_size")})
    metrics = paths.metrics
    if metrics.is_file():
        with open(metrics) as fh:
            rows = fh.read().splitlines()[1:]
        out[METRICS] = f"{len(rows)} rows" + (
            f", last: {rows[-1].split(',')[1]} round {rows[-1].split(',')[2]}" if rows else "")
    out["files"] = ", ".join(sorted(p.name + ("/" if p.is_dir() else "")
                                    for p in path.iterdir()))
    return out


def _anndata(path: Path) -> dict[str, Any]:
    import h5py

    from diffaug_genomics.io.h5ad import OBSM_KEY, UNS_KEY, obs_columns

    out: dict[str, Any] = {"obs columns": ", ".join(obs_columns(path)) or "none"}
    with h5py.File(path, "r") as f:
        obsm = f.get("obsm")
        if isinstance(obsm, h5py.Group):
            out["obsm"] = ", ".join(f"{k} {tuple(obsm[k].shape)}" if hasattr(obsm[k], "shape")
                                    else k for k in obsm)
        for name in ("layers", "uns"):
            group = f.get(name)
            if isinstance(group, h5py.Group) and len(group):
                out[name] = ", ".join(list(group)[:12])
        meta = f.get(f"uns/{UNS_KEY}")
        if isinstance(meta, h5py.Group):
            out["written by"] = "diffaug embed: " + ", ".join(
                f"{k}={_text(meta[k][()])}" for k in ("run_dir", "config_hash", "label_key")
                if k in meta)
        if obsm is not None and OBSM_KEY in obsm:
            out["embedding"] = f"obsm['{OBSM_KEY}'] {tuple(obsm[OBSM_KEY].shape)}"
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _generated(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        out = {"samples": f"{tuple(f['samples'].shape)} {f['samples'].dtype}"
               if "samples" in f else "missing"}
        out.update({k: _text(f.attrs[k]) for k in ("modality", "run_dir", "per_sample", "steps",
                                                    "strength", "seed") if k in f.attrs})
    return out


def _fasta(path: Path) -> dict[str, Any]:
    from diffaug_genomics.io.fasta import ReadStats, read_fasta
    from diffaug_genomics.record_changes import read_parts

    stats = ReadStats()
    lengths, gc, positives, first = [], 0, 0, None
    for rid, seq in read_fasta(path, stats=stats, skip_empty=True):
        first = first or rid
        lengths.append(len(seq))
        upper = seq.upper()
        gc += upper.count(b"G") + upper.count(b"C")
        positives += "|pos" in rid
    n = len(lengths)
    arr = np.asarray(lengths or [0])
    out: dict[str, Any] = {
        "records": n, "lengths": f"min {arr.min()}, median {np.median(arr):g}, max {arr.max()}",
        "GC content": f"{gc / max(int(arr.sum()), 1):.4f}"}
    if positives:
        out["positives"] = f"{positives} records named ID|posK (from diffaug generate)"
    notes = read_parts(stats)
    if notes:
        out["reading"] = "; ".join(notes)
    return out


def _checkpoint(path: Path) -> dict[str, Any]:
    from diffaug_genomics.train import checkpoint as ckpt

    obj = ckpt.load(path)
    if not isinstance(obj, dict):
        return {"content": type(obj).__name__}
    out = {"format": obj.get("format"), "modality": obj.get("modality"),
           "config hash": obj.get("config_hash")}
    for key in ("stage", "round", "epoch", "step", "unit"):
        if key in obj and isinstance(obj[key], int | str):
            out[key] = obj[key]
    out["entries"] = ", ".join(sorted(str(k) for k in obj)[:15])
    return out


def _json(path: Path) -> dict[str, Any]:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return {"content": type(data).__name__}
    if "protocols" in data:
        scores = ", ".join(f"{k} {v['metrics']['accuracy']['mean']:.3f}"
                           for k, v in data["protocols"].items()
                           if "accuracy" in v.get("metrics", {}))
        return {"mode": data.get("mode"), "N": data.get("n"), "D": data.get("dim"),
                "classes": len(data.get("classes", [])), "accuracy": scores}
    return {k: v for k, v in data.items() if isinstance(v, str | int | float) and k != "state"}


def _npy(path: Path) -> dict[str, Any]:
    from diffaug_genomics.io.samples import load_npy

    arr = load_npy(path, mmap_mode="r")
    return {"shape": tuple(arr.shape), "dtype": str(arr.dtype)}


def _table(path: Path) -> dict[str, Any]:
    from diffaug_genomics.io.samples import open_text

    with open_text(path) as fh:
        header = fh.readline().rstrip("\r\n")
        rows = sum(1 for line in fh if line.strip())
    sep = "\t" if "\t" in header else ","
    cols = header.split(sep)
    shown = ", ".join(cols[:10]) + (", ..." if len(cols) > 10 else "")
    return {"rows": rows, "columns": f"{len(cols)}: {shown}"}


_DESCRIBERS = {
    "run": _run, "unfinished-run": _run, "failed-run": _run, "anndata": _anndata,
    "embeddings-h5ad": _anndata, "generated": _generated, "fasta": _fasta,
    "checkpoint": _checkpoint, "json": _json, "image-npy": _npy, "table-npy": _npy,
    "table": _table,
}
