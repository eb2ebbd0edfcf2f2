"""Sharded ``embed`` / ``generate``: which rows a shard owns, its seed and its file name.

Shard ``i`` of ``N`` (``--shard i/N``, 0-based; by default ``SLURM_ARRAY_TASK_ID`` /
``SLURM_ARRAY_TASK_COUNT`` inside a job array) owns the contiguous input rows
``[i * n // N, (i + 1) * n // N)`` of the ``n`` rows the input yields, and writes them to
``OUTPUT`` with ``.shard-0000i-of-0000N`` before its suffix (``emb.h5`` ->
``emb.shard-00002-of-00003.h5``). Shard files are written atomically, so a shard file that
exists is complete: a requeued array task finds its shard done and skips it.
:func:`diffaug_genomics.merge.merge` joins the shards in input order and refuses a missing or
duplicated shard; a FASTA shard's record beside it: :mod:`diffaug_genomics.modalities.fasta_shards`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from diffaug_genomics.errors import InputError
from diffaug_genomics.modalities.interface import Chunk

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
