"""Sequence records to one-hot rows of a fixed length: the encoding policies.

Encoding rules (the alphabet lives in :mod:`diffaug_genomics.alphabet`): A, C, G, T in any case
set one channel, U counts as T, N and the other IUPAC codes give an all-zero row, and so does
padding. Every record becomes rows of exactly ``length`` (L) positions:

``pad`` / ``crop``
    keep the first L bases of a longer record and right-pad a shorter one. The two are the same
    operation; the name only says which change the user expects (the summary counts both).
``center``
    crop or pad symmetrically. A longer record loses ``(n - L) // 2`` bases on the left and the
    rest on the right; a shorter one gets ``(L - n) // 2`` padding rows on the left and the rest
    on the right.
``window``
    tile each record with windows of L bases every ``stride`` bases (default: L, no overlap).
    Window ids are ``id:start-end``, 0-based half-open coordinates in the record. When the
    windows do not end exactly at the record's end, one last window is aligned to the end
    (``start = n - L``, overlapping its neighbour more) so every base is covered and no window
    is padded. A record shorter than L gives one right-padded window ``id:0-n``.

Rows are ``(n, L, 4) uint8`` in chunks (:class:`EncodedChunk`), channels A, C, G, T;
``lengths`` holds how many positions of a row are the record's own sequence (N counts,
padding does not). Used by ``diffaug encode`` (:mod:`diffaug_genomics.encode`) and by the
sequence reader of ``fit`` / ``embed`` / ``generate``
(:mod:`diffaug_genomics.modalities.sequences`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from diffaug_genomics.alphabet import BASE_INDEX, ONEHOT_TABLE
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.fasta import VALID_BYTES

POLICIES = ("pad", "crop", "center", "window")

DEFAULT_CHUNK_RECORDS = 4096
"""Rows per encoded chunk (the HDF5 writer regroups them into its own chunks)."""
MAX_CHUNK_BYTES = 32 << 20
"""Upper bound on one chunk's one-hot array: long L gets fewer rows per chunk."""

_PAD = b"\x00"  # not a nucleotide: the lookup gives an all-zero row
_ONEHOT32 = np.ascontiguousarray(ONEHOT_TABLE).view(np.uint32).reshape(256)
"""Byte -> its one-hot row packed in a uint32 (one gather writes 4 channels)."""
_CALLED = bytes(i for i in range(256) if BASE_INDEX[i] >= 0)
_NOT_AMBIGUOUS = _CALLED + _PAD


@dataclass
class EncodedChunk:
    """One block of encoded rows.

    Attributes:
        onehot: ``(n, L, 4) uint8``, channels A, C, G, T.
        ids: n row ids (record ids, or ``id:start-end`` for windows).
        lengths: ``(n,) int32`` positions holding the record's own sequence.
        starts: ``(n,) int64`` 0-based position in its record of a row's first base: the row
            covers ``record[start:start + length]``.
        record_ids: n ids of the record each row came from (equal to ``ids`` unless windows).
        records: input records that started in this chunk.
        padded, cropped: rows shorter / longer than L before padding / cropping.
        windows: rows produced by the ``window`` policy.
        n_bases, n_ambiguous: sequence positions written, and how many were N/IUPAC.
    """

    onehot: np.ndarray
    ids: list[str]
    lengths: np.ndarray
    record_ids: list[str] = field(default_factory=list)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    records: int = 0
    padded: int = 0
    cropped: int = 0
    windows: int = 0
    n_bases: int = 0
    n_ambiguous: int = 0




def check_length(length: int | None) -> int:
    if length is None or isinstance(length, bool) or int(length) != length or length <= 0:
        raise InputError(f"--length must be a positive integer (got {length})")
    return int(length)


def check_policy(policy: str, stride: int | None) -> None:
    if policy not in POLICIES:
        raise InputError(f"unknown policy '{policy}' (choose from {', '.join(POLICIES)})")
    if stride is not None:
        if policy != "window":
            raise InputError("--stride only applies to --policy window")
        if isinstance(stride, bool) or int(stride) != stride or stride <= 0:
            raise InputError(f"--stride must be a positive integer (got {stride})")


def window_starts(n: int, length: int, stride: int) -> np.ndarray:
    """0-based starts of the windows tiling a record of ``n`` bases (see module docstring)."""
    if n <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, stride, dtype=np.int64)
    if starts[-1] + length < n:
        starts = np.append(starts, n - length)
    return starts


class _Batch:
    """Rows being collected as bytes-like pieces of whole rows (``k * L`` bytes each)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.reset()

    def reset(self) -> None:
        self.pieces: list[bytes | memoryview] = []
        self.ids: list[str] = []
        self.record_ids: list[str] = []
        self.lengths: list[int] = []
        self.starts: list[int] = []
        self.records = self.padded = self.cropped = self.windows = 0

    @property
    def n(self) -> int:
        return len(self.ids)

    def flush(self) -> EncodedChunk:
        n, L = self.n, self.length
        joined = b"".join(self.pieces)
        if joined.translate(None, VALID_BYTES + _PAD):
            self._raise_invalid(joined)
        onehot = _ONEHOT32[np.frombuffer(joined, dtype=np.uint8)].view(np.uint8).reshape(n, L, 4)
        lengths = np.asarray(self.lengths, dtype=np.int32)
        chunk = EncodedChunk(
            onehot=onehot, ids=self.ids, lengths=lengths, record_ids=self.record_ids,
            starts=np.asarray(self.starts, dtype=np.int64),
            records=self.records, padded=self.padded, cropped=self.cropped,
            windows=self.windows, n_bases=int(lengths.sum()),
            n_ambiguous=len(joined.translate(None, _NOT_AMBIGUOUS)))
        self.reset()
        return chunk

    def _raise_invalid(self, joined: bytes) -> None:
        L = self.length
        for row in range(self.n):
            bad = joined[row * L:(row + 1) * L].translate(None, VALID_BYTES + _PAD)
            if bad:
                shown = chr(bad[0]) if 32 < bad[0] < 127 else f"0x{bad[0]:02x}"
                raise InputError(f"invalid character '{shown}' in sequence",
                                 record=self.record_ids[row])


def encode_records(records: Iterable[tuple[str, bytes]], length: int, policy: str = "pad",
                   stride: int | None = None,
                   chunk_records: int = DEFAULT_CHUNK_RECORDS) -> Iterator[EncodedChunk]:
    """One-hot encode ``(id, sequence bytes)`` records in chunks of ``chunk_records`` rows.

    Args:
        records: e.g. :func:`diffaug_genomics.io.fasta.read_fasta`; sequences are bytes.
        length: L, positions per row (> 0).
        policy: ``pad``, ``crop``, ``center`` or ``window`` (module docstring).
        stride: window step for ``window`` (default L).
        chunk_records: rows per yielded chunk (the last may be shorter); reduced so that one
            chunk's one-hot stays under :data:`MAX_CHUNK_BYTES`. Window rows of one long record
            are spread over as many chunks as needed, so memory never grows with a record's
            window count.

    Yields:
        :class:`EncodedChunk` with ``onehot (n, L, 4) uint8``.

    Raises:
        InputError: bad length/policy/stride, or a byte that is not a nucleotide (naming the
            record; only the kept part of a record is checked here, :func:`read_fasta` checks
            whole records).
    """
    L = check_length(length)
    check_policy(policy, stride)
    step = L if stride is None else int(stride)
    cap = max(1, min(int(chunk_records), MAX_CHUNK_BYTES // (4 * L)))
    batch = _Batch(L)
    for rid, seq in records:
        n = len(seq)
        batch.records += 1
        if policy == "window" and n > L:
            starts = window_starts(n, L, step)
            view = np.lib.stride_tricks.sliding_window_view(np.frombuffer(seq, np.uint8), L)
            i = 0
            while i < len(starts):
                take = min(cap - batch.n, len(starts) - i)
                sel = starts[i:i + take]
                batch.pieces.append(memoryview(np.ascontiguousarray(view[sel])).cast("B"))
                batch.ids.extend(f"{rid}:{s}-{s + L}" for s in sel.tolist())
                batch.record_ids.extend([rid] * take)
                batch.lengths.extend([L] * take)
                batch.starts.extend(sel.tolist())
                batch.windows += take
                i += take
                if batch.n >= cap:
                    yield batch.flush()
            continue
        if n <= L:
            if policy == "center" and n < L:
                left = (L - n) // 2
                row = _PAD * left + seq + _PAD * (L - n - left)
            else:
                row = seq.ljust(L, _PAD)
            batch.padded += n < L
            kept, first = n, 0
        else:
            start = (n - L) // 2 if policy == "center" else 0
            row = seq[start:start + L]
            batch.cropped += 1
            kept, first = L, start
        if policy == "window":
            batch.ids.append(f"{rid}:0-{n}")
            batch.windows += 1
        else:
            batch.ids.append(rid)
        batch.pieces.append(row)
        batch.record_ids.append(rid)
        batch.lengths.append(kept)
        batch.starts.append(first)
        if batch.n >= cap:
            yield batch.flush()
    if batch.n:
        yield batch.flush()

