"""Fast, strict FASTA reading: plain, gzip or bgzip, from a path, a stream or standard input.

The reader parses whole blocks (4 MiB) instead of lines: it splits a block on ``b"\\n>"``, drops
newlines with :meth:`bytes.replace` and checks every sequence byte against the alphabet with one
:meth:`bytes.translate` per block (the table comes from :data:`diffaug_genomics.alphabet.BASE_INDEX`).
Memory is bounded by the block size plus the longest record.

Accepted: wrapped or one-line sequences, LF or CRLF, any case, blank lines, spaces or tabs inside
sequence lines (ignored), IUPAC ambiguity codes and U. Rejected with :class:`InputError` naming the
file, line and record: an empty file, binary data, FASTQ, sequence before the first header, a
truncated or corrupt gzip stream, an empty header or sequence, any other character (digits,
``*``, ``-``, punctuation) and a duplicate record id.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from diffaug_genomics.alphabet import BASE_INDEX, INVALID
from diffaug_genomics.errors import InputError

BLOCK_BYTES = 1 << 22
"""Bytes read (after decompression) per parsing step."""

GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd"}

VALID_BYTES = bytes(i for i in range(256) if BASE_INDEX[i] != INVALID)
"""Every byte that is a base or an ambiguity code (deleted by ``translate`` when validating)."""
_BLANKS = b" \t\x0b\x0c"
"""Whitespace tolerated (and removed) inside sequence lines."""


@dataclass
class ReadStats:
    """Counters a caller can pass to :func:`read_fasta` to follow its progress.

    ``bytes_read`` counts input bytes as stored (compressed bytes for gzip input) and
    ``sha256`` hashes exactly those bytes; both are complete once the reader is exhausted.
    """

    bytes_read: int = 0
    records: int = 0
    bases: int = 0
    compressed: bool = False
    rna_records: int = 0
    """Records holding U (read as T)."""
    soft_masked_records: int = 0
    """Records holding lower-case (soft-masked) bases (read as bases)."""
    empty_records: list[str] = field(default_factory=list)
    """Ids of records without sequence that were skipped (``skip_empty``)."""
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        """Hex sha256 of the input bytes read so far."""
        return self._hash.hexdigest()


class SeenIds:
    """Set of record ids at 8 bytes per id, to detect duplicates in files of any size.

    Keeps 64-bit hashes in a few sorted numpy runs (merged like a log-structured merge tree), so
    memory grows by 8 bytes per record instead of ~90 for a Python set of strings. A reported
    duplicate could in principle be a hash collision: probability about n^2 / 2^65 for n
    records (3e-6 for 10 million).
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def add(self, ids: list[str]) -> int | None:
        """Add ``ids``; return the index of the first one seen before (earlier or in ``ids``)."""
        if not ids:
            return None
        h = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(h, kind="stable")
        sorted_h = h[order]
        hits = order[1:][sorted_h[1:] == sorted_h[:-1]].tolist()
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run, h), len(run) - 1)
            hits.extend(np.flatnonzero(run[pos] == h).tolist())
        self.runs.append(sorted_h)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]), kind="stable")
        return min(hits) if hits else None


class _HashingReader:
    """File-like wrapper: serves a peeked prefix first, then reads; hashes and counts everything."""

    def __init__(self, fh: BinaryIO, stats: ReadStats) -> None:
        self.fh, self.stats = fh, stats
        self.prefix = b""
        while len(self.prefix) < 6:  # pipes may return short reads
            more = fh.read(6 - len(self.prefix))
            if not more:
                break
            self.prefix += more
        self._count(self.prefix)

    def _count(self, data: bytes) -> None:
        self.stats.bytes_read += len(data)
        self.stats._hash.update(data)

    def read(self, n: int | None = -1) -> bytes:
        if self.prefix:
            if n is None or n < 0 or n >= len(self.prefix):
                out, self.prefix = self.prefix, b""
            else:
                out, self.prefix = self.prefix[:n], self.prefix[n:]
            return out
        data = self.fh.read(n)
        self._count(data)
        return data


def _display_name(source: str | Path | BinaryIO) -> str:
    if isinstance(source, str | Path):
        return "<stdin>" if str(source) == "-" else str(source)
    return str(getattr(source, "name", "<stream>"))


def _open(source: str | Path | BinaryIO, name: str) -> tuple[BinaryIO, bool]:
    """Open ``source`` for binary reading; returns (handle, whether the caller must close it)."""
    if isinstance(source, str | Path):
        if str(source) == "-":
            return sys.stdin.buffer, False
        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=name)
        if path.is_dir():
            raise InputError("is a directory, not a FASTA file", path=name)
        try:
            return open(path, "rb", buffering=0), True  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"cannot open ({exc.strerror})", path=name) from None
    return source, False


def _blocks(reader: _HashingReader, name: str, stats: ReadStats) -> Iterator[bytes]:
    """Decompressed blocks of the input (gzip and multi-member bgzip detected by magic bytes)."""
    for magic, kind in _OTHER_MAGIC.items():
        if reader.prefix.startswith(magic):
            raise InputError(f"{kind}-compressed input is not supported; decompress it first "
                             "or use gzip/bgzip", path=name)
    if reader.prefix.startswith(GZIP_MAGIC):
        stats.compressed = True
        gz = gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[arg-type]
        try:
            while block := gz.read(BLOCK_BYTES):
                yield block
        except EOFError:
            raise InputError("truncated gzip file (compressed stream ends early)",
                             path=name) from None
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise InputError(f"corrupt gzip data ({exc})", path=name) from None
        return
    while block := reader.read(BLOCK_BYTES):
        yield block


def _first_block(blocks: Iterator[bytes], name: str) -> tuple[bytes, int]:
    """First block with leading blank lines removed, and the line number it starts on."""
    skipped = 0  # newlines in leading blank blocks
    for number, block in enumerate(blocks):
        if number == 0 and block.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
            block = block[3:]
        stripped = block.lstrip(b" \t\r\n")
        if not stripped:
            skipped += block.count(b"\n")
            continue
        line = 1 + skipped + block.count(b"\n", 0, len(block) - len(stripped))
        if b"\x00" in block[:65536] or not 32 <= stripped[0] < 127:
            raise InputError("binary data, not a FASTA file", path=name, line=line)
        if stripped[:1] == b"@":
            raise InputError("looks like FASTQ ('@' header), expected FASTA ('>' header)",
                             path=name, line=line)
        if stripped[:1] != b">":
            raise InputError("not FASTA: sequence data before the first '>' header",
                             path=name, line=line)
        # line counts stay right because only leading whitespace was dropped
        return stripped, line
    raise InputError("empty file (no FASTA records)", path=name)


def _record_chunks(blocks: Iterator[bytes], name: str) -> Iterator[tuple[bytes, int]]:
    """Yield (chunk, first line) where each chunk holds whole records and starts with '>'."""
    first, line = _first_block(blocks, name)
    pieces: list[bytes] = []

    def emit(chunk: bytes) -> tuple[bytes, int]:
        nonlocal line
        start = line
        line += chunk.count(b"\n")
        return chunk, start

    def feed(block: bytes) -> Iterator[tuple[bytes, int]]:
        nonlocal pieces
        cut = block.rfind(b"\n>")
        if cut >= 0:
            complete = b"".join([*pieces, block[: cut + 1]])
            pieces = [block[cut + 1:]]
            if complete:
                yield emit(complete)
        elif block[:1] == b">" and pieces and pieces[-1][-1:] == b"\n":
            complete = b"".join(pieces)
            pieces = [block]
            yield emit(complete)
        else:
            pieces.append(block)

    yield from feed(first)
    for block in blocks:
        yield from feed(block)
    if pieces:
        yield emit(b"".join(pieces))


def _locate_bad_byte(body: bytes) -> tuple[int, bytes]:
    """(line offset within ``body``, offending byte) of the first invalid byte in a record body."""
    bad = body.translate(None, VALID_BYTES + _BLANKS + b"\r\n")
    pos = body.find(bad[:1])
    return body.count(b"\n", 0, pos), bad[:1]


def _describe(byte: bytes) -> str:
    value = byte[0]
    if 32 < value < 127:
        return f"'{byte.decode('ascii')}'"
    return f"byte 0x{value:02x}"


def _parse_chunk(chunk: bytes, line0: int, name: str, seen: SeenIds,
                 stats: ReadStats, skip_empty: bool = False) -> list[tuple[str, bytes]]:
    """Parse and validate a chunk of whole records (``chunk`` starts with '>')."""
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r", b"")
    raw_records = chunk[1:].split(b"\n>")
    out: list[tuple[str, bytes]] = []
    offsets: list[int] = []  # offset of each record (after its '>') in chunk
    offset = 1

    def line_of(pos: int) -> int:
        return line0 + chunk.count(b"\n", 0, pos)

    for raw in raw_records:
        header, _, body = raw.partition(b"\n")
        words = header.split(None, 1)
        if not words:
            raise InputError("empty header (no record id after '>')", path=name,
                             line=line_of(offset))
        rid = words[0].decode("utf-8", errors="replace")
        seq = body.replace(b"\n", b"")
        if not seq and not skip_empty:
            raise InputError("empty sequence", path=name, record=rid, line=line_of(offset))
        out.append((rid, seq))
        offsets.append(offset)
        offset += len(raw) + 2
    dup = seen.add([rid for rid, _ in out])
    if dup is not None:
        rid = out[dup][0]
        raise InputError(f"duplicate record id '{rid}'", path=name, record=rid,
                         line=line_of(offsets[dup]))

    joined = b"".join(seq for _, seq in out)
    bad = joined.translate(None, VALID_BYTES)
    if bad:
        if not bad.translate(None, _BLANKS):  # only spaces/tabs inside sequence lines: drop them
            out = [(rid, seq.translate(None, _BLANKS)) for rid, seq in out]
            joined = b"".join(seq for _, seq in out)
            if any(not seq for _, seq in out) and not skip_empty:
                for rid, seq in out:
                    if not seq:
                        raise InputError("empty sequence", path=name, record=rid)
        else:
            offset = 1
            for raw in raw_records:
                header, _, body = raw.partition(b"\n")
                if body.translate(None, VALID_BYTES + _BLANKS + b"\n"):
                    rid = header.split(None, 1)[0].decode("utf-8", errors="replace")
                    dline, byte = _locate_bad_byte(body)
                    raise InputError(
                        f"invalid character {_describe(byte)} in sequence (allowed: ACGTU, "
                        "IUPAC codes NRYSWKMBDHV, any case)",
                        path=name, record=rid, line=line_of(offset) + 1 + dline)
                offset += len(raw) + 2
    if skip_empty and any(not seq for _, seq in out):
        stats.empty_records += [rid for rid, seq in out if not seq]
        out = [(rid, seq) for rid, seq in out if seq]
    _note_changes(joined, out, stats)
    stats.records += len(out)
    stats.bases += len(joined)
    return out


_LOWER = bytes(range(ord("a"), ord("z") + 1))


def _note_changes(joined: bytes, out: list[tuple[str, bytes]], stats: ReadStats) -> None:
    """Count records holding U (read as T) and lower-case bases (read as bases)."""
    if b"U" in joined or b"u" in joined:
        stats.rna_records += sum(1 for _, seq in out if b"U" in seq or b"u" in seq)
    if len(joined.translate(None, _LOWER)) != len(joined):
        stats.soft_masked_records += sum(
            1 for _, seq in out if len(seq.translate(None, _LOWER)) != len(seq))


def read_fasta(source: str | Path | BinaryIO, *, stats: ReadStats | None = None,
               name: str | None = None, skip_empty: bool = False
               ) -> Iterator[tuple[str, bytes]]:
    """Iterate over the records of a FASTA file.

    Args:
        source: a path, ``"-"`` for standard input, or a binary file object. gzip and bgzip
            input is recognised by its magic bytes (also on standard input), not by the suffix.
        stats: optional :class:`ReadStats` updated while reading (bytes, sha256, records, bases).
        name: how errors name the input (default: the path, ``<stdin>`` or the stream's name).
        skip_empty: skip records without sequence (their ids go to ``stats.empty_records``)
            instead of raising.

    Yields:
        ``(record id, sequence)``: the id is the first word of the header; the sequence is the
        raw bytes (original case) with line breaks, CR and blanks removed.

    Raises:
        InputError: naming the file, the line and the record, for any malformed input (see the
            module docstring). Records are validated a block at a time, so an error can surface
            after earlier records of the same file were yielded.
    """
    label = name or _display_name(source)
    stats = stats if stats is not None else ReadStats()
    fh, owned = _open(source, label)
    try:
        reader = _HashingReader(fh, stats)
        seen = SeenIds()
        for chunk, line0 in _record_chunks(_blocks(reader, label, stats), label):
            yield from _parse_chunk(chunk, line0, label, seen, stats, skip_empty)
    except OSError as exc:
        raise InputError(f"read error ({exc.strerror or exc})", path=label) from None
    finally:
        if owned:
            fh.close()
