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
from typing import Any

from diffaug_genomics.errors import Busy, InputError
from diffaug_genomics.modalities.interface import Chunk
from diffaug_genomics.run_lock import current_writer

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


def slice_chunks(chunks: Iterable[Chunk], start: int, stop: int) -> Iterator[Chunk]:
    """The rows ``[start, stop)`` of a stream of chunks, as chunks (stops reading after)."""
    pos = 0
    for chunk in chunks:
        n = len(chunk.ids)
        lo, hi = max(start - pos, 0), min(stop - pos, n)
        pos += n
        if lo < hi:
            yield chunk.slice(lo, hi)
        if pos >= stop:
            return


# ------------------------------------------------------------------------- FASTA shard records
FASTA_SHARD_SCHEMA = "diffaug-genomics/fasta-shard/1"
"""Schema of the sidecar ``SHARD.fa.json`` that ``generate --shard`` writes beside a FASTA
shard once it is complete: the run, input and rows the shard holds, its record count, size and
sha256. ``merge`` refuses a FASTA shard without it, or one that does not match it."""

_BASES = frozenset(b"ACGTN")


def sidecar_path(fasta: str | Path) -> Path:
    """``pos.shard-00000-of-00002.fa`` -> ``pos.shard-00000-of-00002.fa.json``."""
    p = Path(fasta)
    return p.with_name(p.name + ".json")


def _digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _count_fasta_records(path: Path) -> int:
    """Records of a FASTA shard of ``generate``, every one checked: a ``>`` header line, then
    one line of bases (A, C, G, T, N), the file ending with a newline."""
    records, expect_header, line_no = 0, True, 0
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):  # noqa: B007 - used after the loop
            if not line.endswith(b"\n"):
                raise InputError("truncated: the last line has no newline", path=path,
                                 line=line_no)
            body = line[:-1]
            if expect_header:
                if not body.startswith(b">") or len(body) < 2:
                    raise InputError("expected a '>' header line of generate", path=path,
                                     line=line_no)
                records += 1
            elif not set(body) <= _BASES:
                raise InputError("sequence line holds characters other than A, C, G, T, N "
                                 "(a damaged or foreign shard)", path=path, line=line_no)
            expect_header = not expect_header
    if not expect_header:
        raise InputError("the last record has no sequence line (truncated)", path=path,
                         line=line_no)
    return records


def write_fasta_sidecar(fasta: Path, info: dict[str, Any]) -> None:
    """Record what a complete FASTA shard holds (see :data:`FASTA_SHARD_SCHEMA`)."""
    import json

    from diffaug_genomics.io.atomic import atomic_output

    size, sha = _digest(fasta)
    record = {"schema": FASTA_SHARD_SCHEMA, **info, "records": _count_fasta_records(fasta),
              "bytes": size, "sha256": sha}
    with atomic_output(sidecar_path(fasta), force=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def read_fasta_sidecar(fasta: Path) -> dict[str, Any]:
    """The sidecar of a FASTA shard; :class:`InputError` naming the shard when it is missing
    or unreadable."""
    import json

    side = sidecar_path(fasta)
    if not side.is_file():
        raise InputError(f"no {side.name} beside it: not a complete shard of `diffaug generate "
                         "--shard` (interrupted? rerun that shard)", path=fasta)
    try:
        record = json.loads(side.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable shard record ({exc.__class__.__name__})", path=side) from None
    if not isinstance(record, dict) or record.get("schema") != FASTA_SHARD_SCHEMA:
        raise InputError(f"not a {FASTA_SHARD_SCHEMA} record", path=side)
    missing = [k for k in (*SHARD_ATTRS, "config_hash", "source", "records", "bytes", "sha256")
               if k not in record]
    if missing:
        raise InputError(f"shard record lacks {', '.join(missing)}", path=side)
    return record


def verify_fasta_shard(fasta: Path) -> dict[str, Any]:
    """The sidecar of a FASTA shard after checking the file against it (size, sha256, and
    every record)."""
    record = read_fasta_sidecar(fasta)
    size, sha = _digest(fasta)
    if (size, sha) != (record["bytes"], record["sha256"]):
        raise InputError(f"does not match its record {sidecar_path(fasta).name} ({size} bytes, "
                         f"recorded {record['bytes']}): truncated, modified or another shard's "
                         "file", path=fasta)
    records = _count_fasta_records(fasta)
    if records != record["records"]:  # pragma: no cover - the sha256 already matched
        raise InputError(f"holds {records} records, its record says {record['records']}",
                         path=fasta)
    return record


def fasta_shard_state(fasta: Path, config_hash: str, source: str | Path, shard: Shard) -> str:
    """``complete`` (this run, input and shard, intact), ``incomplete`` (no record: an
    interrupted task) or ``foreign`` (anything else) for an existing FASTA shard file."""
    if not sidecar_path(fasta).is_file():
        return "incomplete"
    try:
        record = verify_fasta_shard(fasta)
    except InputError:
        return "foreign"
    same = (str(record["config_hash"]) == config_hash and str(record["source"]) == str(source)
            and int(record["shard_index"]) == shard.index
            and int(record["shard_count"]) == shard.count)
    return "complete" if same else "foreign"


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
