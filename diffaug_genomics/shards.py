"""Sharded ``embed`` / ``generate``: which rows a shard owns, its file name, and ``merge``.

Shard ``i`` of ``N`` (``--shard i/N``, 0-based; by default ``SLURM_ARRAY_TASK_ID`` /
``SLURM_ARRAY_TASK_COUNT`` inside a job array) owns the contiguous input rows
``[i * n // N, (i + 1) * n // N)`` of the ``n`` rows the input yields, and writes them to
``OUTPUT`` with ``.shard-0000i-of-0000N`` before its suffix (``emb.h5`` ->
``emb.shard-00002-of-00003.h5``). Shard files are written atomically, so a shard file that
exists is complete: a requeued array task finds its shard done and skips it. :func:`merge`
joins the shards in input order and refuses a missing or duplicated shard.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from diffaug_genomics.errors import InputError
from diffaug_genomics.inputs import Chunk

SHARD_ATTRS = ("shard_index", "shard_count", "shard_start", "shard_stop", "total_rows")
"""Attributes a shard's embeddings file carries (dropped from the merged file)."""


def shard_seed(seed: int, index: int, count: int) -> int:
    """A 63-bit seed for shard ``index`` of ``count`` of work seeded ``seed``."""
    digest = hashlib.sha256(f"{seed}/shard {index} of {count}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"--shard {self.index}/{self.count}: need 0 <= i < N (0-based)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/3"`` -> ``Shard(2, 3)``."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None:
            raise InputError(f"--shard must look like i/N, e.g. 0/4 (got {text!r})")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_env(cls) -> Shard | None:
        """The shard of a SLURM array task (``SLURM_ARRAY_TASK_ID`` minus
        ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``); None outside arrays."""
        env = os.environ
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return None
        index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return cls(index, int(env["SLURM_ARRAY_TASK_COUNT"]))

    def rows(self, n: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` this shard owns out of ``n``."""
        return self.index * n // self.count, (self.index + 1) * n // self.count

    def path(self, output: str | Path) -> Path:
        """This shard's file for ``output``."""
        return shard_path(output, self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_path(output: str | Path, index: int, count: int) -> Path:
    """``out.h5`` -> ``out.shard-00002-of-00003.h5`` (the tag goes before the last suffix)."""
    out = Path(output)
    tag = f".shard-{index:05d}-of-{count:05d}"
    return out.with_name(f"{out.stem}{tag}{out.suffix}" if out.suffix else out.name + tag)


def count_rows(source: str | Path, length: int | None, policy: str, stride: int | None) -> int:
    """How many rows ``source`` yields (HDF5: stored rows; FASTA: rows after encoding)."""
    from diffaug_genomics.inputs import iter_chunks
    from diffaug_genomics.io.h5 import is_hdf5, open_onehot

    if str(source) == "-":
        raise InputError("--shard needs an input file (every shard reads it), not stdin")
    if is_hdf5(source):
        with open_onehot(source) as f:
            return int(f["onehot"].shape[0])
    return sum(len(chunk.ids) for chunk in iter_chunks(source, length, policy, stride))


def slice_chunks(chunks: Iterable[Chunk], start: int, stop: int) -> Iterator[Chunk]:
    """The rows ``[start, stop)`` of a stream of chunks, as chunks (stops reading after)."""
    pos = 0
    for chunk in chunks:
        n = len(chunk.ids)
        lo, hi = max(start - pos, 0), min(stop - pos, n)
        pos += n
        if lo < hi:
            yield Chunk(chunk.onehot[lo:hi], chunk.ids[lo:hi], chunk.lengths[lo:hi],
                        None if chunk.labels is None else chunk.labels[lo:hi], chunk.policy)
        if pos >= stop:
            return


# ------------------------------------------------------------------------------------ merge
@dataclass
class MergeSummary:
    output: Path
    shards: int
    rows: int

    def line(self) -> str:
        return f"merged {self.shards} shards ({self.rows} rows) into {self.output}"


_SHARD_NAME = re.compile(r"\.shard-(\d{5})-of-(\d{5})")


def _index_of(path: Path) -> tuple[int, int]:
    m = _SHARD_NAME.search(path.name)
    if m is None:
        raise InputError("not a shard file name (expected NAME.shard-0000i-of-0000N.EXT)",
                         path=path)
    return int(m.group(1)), int(m.group(2))


def find_shards(output: str | Path) -> list[Path]:
    """The shard files of ``output`` next to it (any count), sorted by name."""
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    pattern = re.compile(re.escape(out.stem) + r"\.shard-\d{5}-of-\d{5}" + re.escape(out.suffix)
                         + "$")
    return sorted(p for p in parent.iterdir() if pattern.match(p.name))


def merge(output: str | Path, shards: list[str | Path] | None = None, *,
          force: bool = False) -> MergeSummary:
    """Join shard files into ``output`` in input order.

    ``shards`` defaults to the files named like ``output``'s shards beside it. Every shard
    ``0 .. N-1`` must be there exactly once (an :class:`InputError` names the missing file or
    the duplicated index). Embeddings (HDF5) are checked to come from the same run and input
    and to tile the rows; FASTA shards from ``generate`` are concatenated.
    """
    from diffaug_genomics.io.atomic import atomic_output, check_output
    from diffaug_genomics.io.h5 import is_hdf5

    out = check_output(output, force)
    paths = [Path(p) for p in shards] if shards else find_shards(out)
    if not paths:
        raise InputError("no shard files found (expected e.g. "
                         f"{shard_path(out, 0, 2).name})", path=out.parent)
    for p in paths:
        if not p.is_file():
            raise InputError("no such shard file", path=p)
    hdf5 = [is_hdf5(p) for p in paths]
    if any(hdf5) != all(hdf5):
        raise InputError("shards mix HDF5 and FASTA files", path=paths[0])
    if all(hdf5):
        return _merge_embeddings(out, paths, force)
    ordered = _ordered([(p, _index_of(p)) for p in paths], out)
    with atomic_output(out, force) as tmp, open(tmp, "wb") as dst:
        for p in ordered:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    return MergeSummary(out, len(ordered), -1)


def _ordered(index: list[tuple[Path, tuple[int, int]]], out: Path) -> list[Path]:
    """Shard files in order; every index of one count present exactly once."""
    counts = {count for _, (_, count) in index}
    if len(counts) != 1:
        raise InputError(f"shards of different counts ({sorted(counts)}): remove the stale "
                         "ones", path=out.parent)
    count = counts.pop()
    by_index: dict[int, Path] = {}
    for path, (i, n) in sorted(index, key=lambda kv: kv[1]):
        if not 0 <= i < n:
            raise InputError(f"shard index {i} is not below its count {n}", path=path)
        if i in by_index:
            raise InputError(f"shard {i} of {count} is given twice (also {by_index[i]})",
                             path=path)
        by_index[i] = path
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        names = ", ".join(str(shard_path(out, i, count)) for i in missing[:5])
        raise InputError(f"missing shard{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(str, missing))} of {count}: {names}")
    return [by_index[i] for i in range(count)]


def _merge_embeddings(out: Path, paths: list[Path], force: bool) -> MergeSummary:
    import numpy as np

    from diffaug_genomics.io.atomic import atomic_output
    from diffaug_genomics.io.h5 import read_embeddings, write_embeddings

    parts = {}
    for p in paths:
        emb, ids, labels, attrs = read_embeddings(p)
        if any(k not in attrs for k in SHARD_ATTRS):
            raise InputError("embeddings file is not a shard (no shard_index attribute)", path=p)
        parts[p] = (emb, ids, labels, attrs)
    ordered = _ordered([(p, (int(parts[p][3]["shard_index"]), int(parts[p][3]["shard_count"])))
                        for p in paths], out)
    first = parts[ordered[0]][3]
    total = int(first["total_rows"])
    for i, p in enumerate(ordered):
        emb, ids, _, attrs = parts[p]
        for key in ("config_hash", "source", "total_rows"):
            if str(attrs.get(key)) != str(first.get(key)):
                raise InputError(f"{key} differs from shard 0's ({attrs.get(key)} vs "
                                 f"{first.get(key)}): shards of different runs or inputs", path=p)
        lo, hi = Shard(i, len(ordered)).rows(total)
        if (int(attrs["shard_start"]), int(attrs["shard_stop"])) != (lo, hi) or len(ids) != hi - lo:
            raise InputError(f"holds rows {attrs['shard_start']}-{attrs['shard_stop']} "
                             f"({len(ids)} rows), expected {lo}-{hi}", path=p)
    has_labels = all(parts[p][2] is not None for p in ordered)
    emb = np.concatenate([parts[p][0] for p in ordered])
    ids = [i for p in ordered for i in parts[p][1]]
    labels = [x for p in ordered for x in parts[p][2]] if has_labels else None
    attrs = {k: v for k, v in first.items()
             if k not in (*SHARD_ATTRS, "schema", "tool_version", "created")}
    attrs["merged_from"] = len(ordered)
    with atomic_output(out, force) as tmp:
        write_embeddings(tmp, emb, ids, labels, attrs)
    return MergeSummary(out, len(ordered), len(ids))
