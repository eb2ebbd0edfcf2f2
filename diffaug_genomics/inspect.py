"""Summaries of diffaug HDF5 files (``diffaug inspect``): one-hot and embeddings schemas."""

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
    if p.exists() and not p.is_dir() and not is_hdf5(p):
        raise InputError("not an HDF5 file", path=p)
    schema = schema_of(p)
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
