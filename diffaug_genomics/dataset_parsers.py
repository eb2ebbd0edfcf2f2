"""Parsers of the benchmark datasets' packaged files (see :mod:`diffaug_genomics.datasets`):
the DHS table, UCI splice junctions in KEEL format, JASPAR's SQLite database, and the
deterministic stratified split. Text and bytes in, plain Python and numpy out: no files, no
downloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from diffaug_genomics.alphabet import BASE_INDEX, INVALID
from diffaug_genomics.errors import DiffaugError, InputError


class DhsRecord(NamedTuple):
    """One row of the DHS table."""

    id: str
    sequence: str
    label: str
    split: str
    chrom: str


DHS_SPLITS = {"training": "train", "validation": "validation", "test": "test"}


def parse_dhs_table(text: str, source: str = "<dhs table>") -> list[DhsRecord]:
    """Parse dnadiffusion's tab-separated DHS table.

    Columns are found by header name: ``dhs_id``, ``chr``, ``sequence``, ``TAG`` (the cell type,
    e.g. ``GM12878_ENCLB441ZZZ``; the label keeps the part before the first ``_``) and
    ``data_label`` (``training``, ``validation`` or ``test``, mapped to ``train``, ``validation``,
    ``test``). Raises :class:`InputError` naming ``source`` and the line on malformed rows.
    """
    lines = text.splitlines()
    if not lines:
        raise InputError("empty DHS table", path=source)
    header = lines[0].rstrip("\r").split("\t")
    need = ("dhs_id", "chr", "sequence", "TAG", "data_label")
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(f"DHS table header lacks column(s) {', '.join(missing)}", path=source,
                         line=1)
    col = {c: header.index(c) for c in need}
    records: list[DhsRecord] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise InputError(f"{len(fields)} fields, the header has {len(header)}", path=source,
                             line=lineno)
        rid, seq = fields[col["dhs_id"]], fields[col["sequence"]].upper()
        split = DHS_SPLITS.get(fields[col["data_label"]])
        if split is None:
            raise InputError(f"unknown data_label {fields[col['data_label']]!r}", path=source,
                             line=lineno)
        if rid in seen:
            raise InputError(f"duplicate dhs_id {rid!r}", path=source, line=lineno)
        _check_bases(seq, source, lineno)
        seen.add(rid)
        label = fields[col["TAG"]].split("_", 1)[0]
        records.append(DhsRecord(rid, seq, label, split, fields[col["chr"]]))
    return records


def parse_keel(text: str, source: str = "<keel file>") -> tuple[list[str], list[str]]:
    """Parse the KEEL splice file: ``(sequences, labels)`` in file order.

    Lines starting with ``@`` (header) or ``%`` (comment) and blank lines are skipped; each data
    line is comma-separated single bases followed by the class. Every record must have the same
    number of bases. Bases are kept as written (IUPAC ambiguity codes included).
    """
    seqs: list[str] = []
    labels: list[str] = []
    width = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "@%":
            continue
        fields = [f.strip() for f in stripped.split(",")]
        bases, label = fields[:-1], fields[-1]
        if not label or not bases:
            raise InputError("expected comma-separated bases followed by a class", path=source,
                             line=lineno)
        if any(len(b) != 1 for b in bases):
            raise InputError("a base field is not a single letter", path=source, line=lineno)
        if width is None:
            width = len(bases)
        elif len(bases) != width:
            raise InputError(f"{len(bases)} bases, earlier records have {width}", path=source,
                             line=lineno)
        seq = "".join(bases).upper()
        _check_bases(seq, source, lineno)
        seqs.append(seq)
        labels.append(label)
    if not seqs:
        raise InputError("no data lines", path=source)
    return seqs, labels


def _check_bases(seq: str, source: str, lineno: int) -> None:
    bad = np.flatnonzero(BASE_INDEX[np.frombuffer(seq.encode("ascii", "replace"), np.uint8)]
                         == INVALID)
    if bad.size:
        raise InputError(f"invalid nucleotide {seq[bad[0]]!r} at position {bad[0] + 1}",
                         path=source, line=lineno)


def stratified_split(labels: Sequence[str], train_fraction: float = 0.7,
                     seed: int = 0) -> np.ndarray:
    """Deterministic stratified split: ``(N,) bool``, True for training.

    Within each class (classes in sorted order) the indices are permuted with
    ``numpy.random.default_rng(seed)`` and the first ``round(train_fraction * n_class)`` go to
    training.
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), dtype=bool)
    for cls in sorted(set(y.tolist())):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        train[idx[: int(round(train_fraction * len(idx)))]] = True
    return train



def read_jaspar_sqlite(data: bytes, matrix_ids: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
    """Read PFMs from JASPAR's SQLite database (bytes): ``[(matrix id, name, counts (W, 4))]``.

    ``matrix_ids`` are ``BASE_ID.VERSION`` strings (e.g. ``MA0139.2``); columns are A, C, G, T.
    """
    import sqlite3

    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(data)
        out = []
        for mid in matrix_ids:
            base, _, version = mid.partition(".")
            row = con.execute("SELECT ID, NAME FROM MATRIX WHERE BASE_ID = ? AND VERSION = ?",
                              (base, int(version))).fetchone()
            if row is None:
                raise DiffaugError(f"JASPAR database has no matrix {mid}")
            cells = con.execute("SELECT row, col, val FROM MATRIX_DATA WHERE ID = ?",
                                (row[0],)).fetchall()
            width = max(int(c) for _, c, _ in cells)
            counts = np.zeros((width, 4), dtype=np.float64)
            for r, c, v in cells:
                counts[int(c) - 1, "ACGT".index(r.upper())] = float(v)
            out.append((mid, str(row[1]), counts))
        return out
    finally:
        con.close()
