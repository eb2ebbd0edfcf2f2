"""The output's name decides its format, for every command.

=====================================  ===========================================
``.fa`` ``.fasta`` ``.fna`` (``-``)     FASTA (``-``: standard output)
 ... ``.gz`` / ``.bgz``                 the same, gzip / bgzip (BGZF, indexable)
``.h5`` ``.hdf5``                       the project's HDF5 schema for that output
``.h5ad``                               AnnData (embeddings of any modality)
``.npy``                                a NumPy array (image / tabular positives)
``.json``                               JSON (``evaluate``)
``.html``                               HTML (``report``)
=====================================  ===========================================

Each command declares the formats it writes (:data:`COMMAND_FORMATS`); a name that matches
none of them is an :class:`InputError` (exit 2) naming the choices, before any work starts.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from diffaug_genomics.errors import InputError


@dataclass(frozen=True)
class Format:
    """An output format: its name, the suffixes that select it, a phrase for messages and
    whether ``.gz`` / ``.bgz`` may follow."""

    name: str
    suffixes: tuple[str, ...]
    what: str
    compressible: bool = False
    stdout: bool = False


FASTA = Format("fasta", (".fa", ".fasta", ".fna"), "FASTA", compressible=True, stdout=True)
HDF5 = Format("hdf5", (".h5", ".hdf5"), "HDF5")
H5AD = Format("h5ad", (".h5ad",), "AnnData")
NPY = Format("npy", (".npy",), "NumPy array")
JSON = Format("json", (".json",), "JSON", stdout=True)
HTML = Format("html", (".html", ".htm"), "HTML")

COMPRESSION = {".gz": "gzip", ".bgz": "bgzip"}


@dataclass(frozen=True)
class OutputFormat:
    """The format an output name selected, and its compression (None, ``gzip``, ``bgzip``)."""

    format: Format
    compression: str | None = None
    stdout: bool = False

    @property
    def name(self) -> str:
        return self.format.name

    def describe(self) -> str:
        """``"FASTA, gzip"``, ``"AnnData"``..."""
        return self.format.what + (f", {self.compression}" if self.compression else "")


def _choices(formats: tuple[Format, ...], what: dict[str, str] | None = None) -> str:
    parts = []
    for f in formats:
        names = "/".join(f.suffixes)
        extra = " (+ .gz or .bgz)" if f.compressible else ""
        parts.append(f"{names}{extra} ({(what or {}).get(f.name, f.what)})")
    if any(f.stdout for f in formats):
        parts.append("'-' (standard output)")
    return ", ".join(parts)


def output_format(output: str | Path, formats: tuple[Format, ...], command: str,
                  what: dict[str, str] | None = None, inputs: tuple = ()) -> OutputFormat:
    """The format ``output``'s name selects among ``formats`` (those ``command`` writes).

    ``what`` rewords a format for this command (``{"hdf5": "embeddings HDF5"}``). An output
    that is one of ``inputs`` is refused first, as that, whatever its name.

    Raises:
        InputError: the name matches none of them (or compresses a format that is not
            compressible); the message lists the choices.
    """
    text = str(output)
    if text != "-" and inputs:
        from diffaug_genomics.io.atomic import refuse_inputs

        refuse_inputs(Path(text), inputs)
    if text == "-":
        for f in formats:
            if f.stdout:
                return OutputFormat(f, None, stdout=True)
        raise InputError(f"{command} cannot write to standard output ('-'): give -o FILE, "
                         f"one of {_choices(formats, what)}")
    name = Path(text).name.lower()
    compression = None
    for suffix, kind in COMPRESSION.items():
        if name.endswith(suffix):
            compression, name = kind, name[: -len(suffix)]
            break
    for f in formats:
        if any(name.endswith(s) for s in f.suffixes) and len(name) > 0:
            if compression and not f.compressible:
                raise InputError(f"{command} writes {(what or {}).get(f.name, f.what)} here, "
                                 f"which is not {compression}-compressed as a whole: drop the "
                                 f"'{Path(text).suffix}'", path=output)
            return OutputFormat(f, compression)
    raise InputError(f"cannot tell which format to write from the name: {command} writes "
                     f"{_choices(formats, what)}", path=output)


@contextmanager
def open_text_output(path: str | Path, compression: str | None) -> Iterator[TextIO]:
    """A text file to write at ``path`` (a temporary file: the caller renames it), plain,
    gzip or bgzip (BGZF blocks, readable by ``gzip`` and indexable by ``samtools faidx``)."""
    if compression is None:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
    elif compression == "gzip":
        with gzip.open(path, "wt", encoding="utf-8", newline="\n", compresslevel=6) as fh:
            yield fh
    elif compression == "bgzip":
        from Bio import bgzf

        raw = bgzf.BgzfWriter(str(path), "wb")
        try:
            yield _TextOnto(raw)  # type: ignore[misc]
        finally:
            raw.close()
    else:  # pragma: no cover - COMPRESSION lists the kinds
        raise ValueError(compression)


class _TextOnto:
    """The ``write`` / ``flush`` of a text file over a binary writer (BGZF), UTF-8."""

    def __init__(self, raw: object) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(text.encode("utf-8"))  # type: ignore[attr-defined]
        return len(text)

    def flush(self) -> None:
        self.raw.flush()  # type: ignore[attr-defined]
