"""The record ``generate --shard`` writes beside a complete FASTA shard (``SHARD.fa.json``), and
the check of a shard against it that ``merge`` and a requeued task make.

A FASTA shard holds what :class:`~diffaug_genomics.modalities.sequences.SequencePositives`
writes: records of one ``>`` header line and one line of bases. Its record names the run,
input and rows it holds (:data:`~diffaug_genomics.shards.SHARD_ATTRS`), its record count, size
and sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from diffaug_genomics.errors import InputError
from diffaug_genomics.shards import SHARD_ATTRS, Shard

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
