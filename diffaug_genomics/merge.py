"""``diffaug merge``: the shards of one ``embed`` or ``generate`` output joined in input order.

Embeddings shards (HDF5) must tile the rows exactly (their ``shard_*`` attributes); FASTA
shards are each checked against their record
(:mod:`diffaug_genomics.modalities.fasta_shards`) and concatenated. A shard still being
written (its lock held) is refused with exit 75.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffaug_genomics.errors import Busy, InputError
from diffaug_genomics.lock_holder import current_writer
from diffaug_genomics.modalities.fasta_shards import verify_fasta_shard
from diffaug_genomics.shards import SHARD_ATTRS, Shard, shard_path


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
    from diffaug_genomics.io.atomic import check_output
    from diffaug_genomics.io.h5 import is_hdf5

    out = Path(output)
    paths = [Path(p) for p in shards] if shards else find_shards(out)
    if not paths:
        raise InputError("no shard files found (expected e.g. "
                         f"{shard_path(out, 0, 2).name})", path=out.parent)
    out = check_output(output, force, inputs=paths)
    for p in paths:
        writer = current_writer(p)
        if writer is not None:  # a retried array task writing it again right now
            raise Busy(f"{p}: being written by {writer.describe()}; merge once it has finished")
        if not p.is_file():
            raise InputError("no such shard file", path=p)
        if p.stat().st_size == 0:
            raise InputError("empty shard file (0 bytes: an interrupted copy or task?); rerun "
                             "that shard", path=p)
    hdf5 = [is_hdf5(p) for p in paths]
    if any(hdf5) != all(hdf5):
        kind = {True: "HDF5", False: "FASTA"}
        odd = next(p for p, h in zip(paths, hdf5, strict=True) if h != hdf5[0])
        raise InputError(f"is {kind[not hdf5[0]]} but {paths[0]} is {kind[hdf5[0]]}: shards "
                         "of one output are all HDF5 (embed) or all FASTA (generate)", path=odd)
    from diffaug_genomics.output_formats import FASTA, HDF5, Format, output_format

    plain_fasta = Format("fasta", FASTA.suffixes, "FASTA, as the shards")
    output_format(out, (HDF5,) if all(hdf5) else (plain_fasta,), "merge",
                  {"hdf5": "embeddings HDF5, as the shards"})
    if all(hdf5):
        return _merge_embeddings(out, paths, force)
    return _merge_fasta(out, paths, force)


def _merge_fasta(out: Path, paths: list[Path], force: bool) -> MergeSummary:
    """FASTA shards of ``generate``: each checked against its sidecar record (size, sha256,
    every record), the records checked to come from one run and input and to tile its rows."""
    from diffaug_genomics.io.atomic import atomic_output

    ordered = _ordered([(p, _index_of(p)) for p in paths], out)
    records = {p: verify_fasta_shard(p) for p in ordered}
    _check_tiling(ordered, records)
    with atomic_output(out, force, inputs=ordered) as tmp, open(tmp, "wb") as dst:
        for p in ordered:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    return MergeSummary(out, len(ordered), sum(int(records[p]["records"]) for p in ordered))


def _check_tiling(ordered: list[Path], attrs: dict[Path, Any],
                  rows: dict[Path, int] | None = None) -> None:
    """Shard ``i`` (in ``ordered``) comes from shard 0's run and input, says it is shard ``i``
    of ``len(ordered)``, and holds rows ``Shard(i, N).rows(total)`` (``rows``: its row count,
    when the shard's rows can be counted)."""
    first = attrs[ordered[0]]
    total = int(first["total_rows"])
    for i, p in enumerate(ordered):
        a = attrs[p]
        for key in ("config_hash", "source", "total_rows"):
            if str(a.get(key)) != str(first.get(key)):
                raise InputError(f"{key} differs from shard 0's ({a.get(key)} vs "
                                 f"{first.get(key)}): shards of different runs or inputs", path=p)
        if (int(a["shard_index"]), int(a["shard_count"])) != (i, len(ordered)):
            raise InputError(f"its record says shard {a['shard_index']} of {a['shard_count']} "
                             f"but its name says {i} of {len(ordered)} (a renamed copy?)", path=p)
        lo, hi = Shard(i, len(ordered)).rows(total)
        n = hi - lo if rows is None else rows[p]
        if (int(a["shard_start"]), int(a["shard_stop"])) != (lo, hi) or n != hi - lo:
            raise InputError(f"holds rows {a['shard_start']}-{a['shard_stop']} "
                             f"({n} rows), expected {lo}-{hi}", path=p)


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
        given = next(iter(by_index.values()))  # name the missing files where the given ones are
        names = ", ".join(str(given.with_name(_SHARD_NAME.sub(f".shard-{i:05d}-of-{count:05d}",
                                                               given.name, count=1)))
                          for i in missing[:5])
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
    _check_tiling(ordered, {p: parts[p][3] for p in ordered},
                  {p: len(parts[p][1]) for p in ordered})
    has_labels = all(parts[p][2] is not None for p in ordered)
    emb = np.concatenate([parts[p][0] for p in ordered])
    ids = [i for p in ordered for i in parts[p][1]]
    labels = [x for p in ordered for x in parts[p][2]] if has_labels else None
    attrs = {k: v for k, v in first.items()
             if k not in (*SHARD_ATTRS, "schema", "tool_version", "created")}
    attrs["merged_from"] = len(ordered)
    with atomic_output(out, force, inputs=ordered) as tmp:
        write_embeddings(tmp, emb, ids, labels, attrs)
    return MergeSummary(out, len(ordered), len(ids))
