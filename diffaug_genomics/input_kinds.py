"""What a path given to a command is, before anything else is done with it.

:func:`classify` names the kind of every input and every file diffaug writes: a run
directory (finished, unfinished, or left by a fit that failed), one-hot HDF5 (``encode``),
embeddings HDF5 or AnnData (``embed``), generated samples (``generate``), FASTA / FASTQ,
an image folder, ``.npy`` arrays, CSV / TSV tables, AnnData, JSON reports, checkpoints...
by content where it can, by name otherwise. :func:`require` turns a kind a command cannot use
into one :class:`InputError` that says what the path is and what the command needs there
(with the command line that was probably meant), so that the error names the real mistake
instead of whatever a reader of another kind trips over first.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diffaug_genomics.errors import InputError

RUN = "run"
UNFINISHED_RUN = "unfinished-run"
FAILED_RUN = "failed-run"
ONEHOT = "onehot"
EMBEDDINGS = "embeddings"
EMBEDDINGS_H5AD = "embeddings-h5ad"
ANNDATA = "anndata"
GENERATED = "generated"
FASTA = "fasta"
STDIN = "stdin"
FASTQ = "fastq"
ALIGNMENTS = "alignments"
IMAGE_FOLDER = "image-folder"
IMAGE_NPY = "image-npy"
TABLE_NPY = "table-npy"
IMAGE_HDF5 = "image-hdf5"
TABLE = "table"
JSON_FILE = "json"
CHECKPOINT = "checkpoint"
CONFIG = "config"
HTML = "html"
OTHER_HDF5 = "hdf5"
FOLDER = "folder"
MISSING = "missing"
UNKNOWN = "unknown"

RUN_KINDS = (RUN, UNFINISHED_RUN, FAILED_RUN)
DATA_KINDS = {FASTA: "dna", STDIN: "dna", ONEHOT: "dna", IMAGE_FOLDER: "image",
              IMAGE_NPY: "image", IMAGE_HDF5: "image", TABLE: "tabular", TABLE_NPY: "tabular",
              ANNDATA: "tabular"}
"""Kinds that are training / embedding input, and their modality."""
EMBEDDING_KINDS = (EMBEDDINGS, EMBEDDINGS_H5AD)

MODALITY_INPUTS = {
    "dna": "FASTA (plain or gzip) or one-hot HDF5 from `diffaug encode`",
    "image": "an image folder, an (N, H, W[, C]) .npy or an HDF5 file with /images",
    "tabular": "a CSV/TSV table, an (N, D) .npy or an AnnData .h5ad",
}


@dataclass(frozen=True)
class Kind:
    """What a path is: ``name`` (one of this module's constants), ``phrase`` (for messages:
    "a run directory of `diffaug fit`"), the ``modality`` of a data input (None otherwise)."""

    name: str
    phrase: str
    modality: str | None = None
    path: str = ""

    @property
    def is_data(self) -> bool:
        return self.name in DATA_KINDS


def _hdf5_kind(path: Path) -> Kind:
    import h5py

    from diffaug_genomics.io.h5 import EMBEDDINGS_SCHEMA, ONEHOT_SCHEMA

    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
            schema = schema.decode() if isinstance(schema, bytes) else schema
            if schema == ONEHOT_SCHEMA:
                n, length = _two(f, "onehot")
                return Kind(ONEHOT, f"one-hot HDF5 from `diffaug encode` ({n} sequences of "
                            f"{length} bp)", "dna")
            if schema == EMBEDDINGS_SCHEMA:
                n, dim = _two(f, "embeddings")
                return Kind(EMBEDDINGS, f"embeddings HDF5 from `diffaug embed` ({n} x {dim})")
            if schema is not None and str(schema).startswith("diffaug-genomics/generated"):
                return Kind(GENERATED, "generated samples from `diffaug generate`")
            has_obsm = "obsm" in f and isinstance(f["obsm"], h5py.Group) and "X_diffaug" in f["obsm"]
            if "obs" in f and ("X" in f or "obsm" in f):
                n = _anndata_shape(f)
                if "X" in f:
                    extra = " and obsm['X_diffaug']" if has_obsm else ""
                    return Kind(ANNDATA, f"AnnData ({n[0]} cells x {n[1]} features{extra})",
                                "tabular")
                if has_obsm:
                    return Kind(EMBEDDINGS_H5AD, f"AnnData embeddings from `diffaug embed` "
                                f"({n[0]} cells, obsm['X_diffaug'], no X)")
                return Kind(OTHER_HDF5, "AnnData without X or obsm['X_diffaug']")
            if "images" in f:
                return Kind(IMAGE_HDF5, "an image HDF5 file (/images)", "image")
            keys = ", ".join(list(f.keys())[:6])
            return Kind(OTHER_HDF5, f"an HDF5 file that is not a diffaug file (schema "
                        f"{schema!r}; holds {keys or 'nothing'})")
    except OSError as exc:
        return Kind(UNKNOWN, f"an unreadable HDF5 file ({exc.__class__.__name__})")


def _two(f: object, name: str) -> tuple[object, object]:
    """The first two dimensions of dataset ``name`` ('?' where it has fewer: a damaged file,
    which its reader describes)."""
    shape = tuple(getattr(f.get(name), "shape", ()) or ())  # type: ignore[attr-defined]
    return (shape + ("?", "?"))[0], (shape + ("?", "?"))[1]


def _anndata_shape(f: object) -> tuple[object, object]:
    import h5py

    x = f.get("X")  # type: ignore[attr-defined]
    if isinstance(x, h5py.Dataset) and x.ndim == 2:
        return x.shape
    if isinstance(x, h5py.Group):
        shape = x.attrs.get("shape", x.attrs.get("h5sparse_shape"))
        if shape is not None and len(shape) == 2:
            return int(shape[0]), int(shape[1])
    obsm = f.get("obsm")  # type: ignore[attr-defined]
    if isinstance(obsm, h5py.Group) and "X_diffaug" in obsm:
        return obsm["X_diffaug"].shape[0], 0
    return "?", "?"


def _run_kind(path: Path) -> Kind | None:
    from diffaug_genomics.run_files import MARKERS, RunPaths

    if not any((path / name).exists() for name in MARKERS):
        return None
    paths = RunPaths(path)
    if paths.encoder.is_file():
        return Kind(RUN, "a run directory of `diffaug fit`")
    if paths.latest.is_file():
        return Kind(UNFINISHED_RUN, "an unfinished run directory (checkpoints/latest.pt, no "
                    "encoder.pt: stopped or still training; continue it with `diffaug fit "
                    "INPUT -o RUN --resume`)")
    last = last_log_line(paths.log)
    said = f"; its log.txt ends: {last}" if last else ""
    return Kind(FAILED_RUN, "the run directory of a fit that failed or was killed before its "
                f"first checkpoint (no checkpoints/latest.pt, no encoder.pt{said}); fit again "
                "into it or remove it")


def last_log_line(log: Path, limit: int = 160) -> str | None:
    """The last non-empty line of a run's ``log.txt`` (its timestamp dropped), or None."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if not lines:
        return None
    words = lines[-1].split(" ", 3)
    text = words[3] if len(words) == 4 and words[2].isupper() else lines[-1]
    return text[:limit]


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(n)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                return b"GZ:" + gz.read(n)
        except (OSError, EOFError):
            return head
    return head


def _json_kind(path: Path) -> Kind:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Kind(UNKNOWN, "a file with a .json name that is not JSON")
    if isinstance(data, dict):
        if "protocols" in data and "mode" in data:
            return Kind(JSON_FILE, "a `diffaug evaluate` report (JSON)")
        if str(data.get("format", "")).startswith("diffaug-genomics/preprocess"):
            return Kind(JSON_FILE, "a run's preprocessing record (preprocess.json)")
        if str(data.get("schema", "")).startswith("diffaug-genomics/fasta-shard"):
            return Kind(JSON_FILE, "the completion record of a FASTA shard of `diffaug "
                        "generate --shard`")
    return Kind(JSON_FILE, "a JSON file")


def classify(source: str | Path) -> Kind:
    """The :class:`Kind` of ``source`` (``-`` is standard input, read as FASTA)."""
    kind = _classify(source)
    return Kind(kind.name, kind.phrase, kind.modality, str(source))


def _classify(source: str | Path) -> Kind:
    from diffaug_genomics.io.h5 import is_hdf5
    from diffaug_genomics.io.samples import list_images, load_npy, npy_kind, table_suffix

    if str(source) == "-":
        return Kind(STDIN, "standard input (read as FASTA)", "dna")
    path = Path(source)
    if not path.exists():
        return Kind(MISSING, "not there (no such file or folder)")
    if path.is_dir():
        run = _run_kind(path)
        if run is not None:
            return run
        if list_images(path):
            return Kind(IMAGE_FOLDER, "an image folder", "image")
        return Kind(FOLDER, "a folder that is neither a run directory nor holds PNG/JPEG images")
    suffix = path.suffix.lower()
    if is_hdf5(path):
        return _hdf5_kind(path)
    if suffix == ".npy":
        try:
            shape = tuple(load_npy(path, mmap_mode="r").shape)
        except InputError:
            return Kind(UNKNOWN, "a .npy file NumPy cannot read")
        kind = npy_kind(shape)
        if kind == "image":
            return Kind(IMAGE_NPY, f"an image array of shape {shape}", "image")
        if kind == "tabular":
            return Kind(TABLE_NPY, f"a table array of shape {shape}", "tabular")
        return Kind(UNKNOWN, f"a .npy array of shape {shape}")
    if suffix == ".pt":
        return Kind(CHECKPOINT, "a PyTorch checkpoint of a run")
    if suffix in (".yaml", ".yml"):
        return Kind(CONFIG, "a YAML file (a configuration)")
    if suffix in (".html", ".htm"):
        return Kind(HTML, "an HTML file (a report)")
    if suffix == ".json":
        return _json_kind(path)
    if table_suffix(path):
        return Kind(TABLE, "a CSV/TSV table", "tabular")
    try:
        head = _head(path)
    except OSError as exc:
        return Kind(UNKNOWN, f"unreadable ({exc.strerror})")
    body = head[3:] if head.startswith(b"GZ:") else head
    body = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body[:1] == b">":
        return Kind(FASTA, "FASTA" + (" (gzip)" if head.startswith(b"GZ:") else ""), "dna")
    if body[:1] == b"@" and not body.startswith(b"@HD") and not body.startswith(b"@SQ"):
        return Kind(FASTQ, "FASTQ (reads with qualities; diffaug reads FASTA)")
    if body.startswith(b"BAM\x01") or body.startswith((b"@HD", b"@SQ")):
        return Kind(ALIGNMENTS, "alignments (SAM/BAM; diffaug reads FASTA)")
    if path.stat().st_size == 0:
        return Kind(UNKNOWN, "an empty file")
    return Kind(UNKNOWN, "a file of a kind diffaug does not read")


def require(kind: Kind, accepted: Iterable[str], needs: str, hint: str = "") -> Kind:
    """``kind`` when it is one of ``accepted``, else an :class:`InputError` naming the path:
    ``"<path>: is <what it is>; <needs>[; <hint>]"``."""
    if kind.name in tuple(accepted):
        return kind
    if kind.name == MISSING:
        raise InputError(f"no such file or folder; {needs}", path=kind.path)
    text = f"is {kind.phrase}; {needs}"
    raise InputError(f"{text}{'; ' + hint if hint else ''}", path=kind.path)


def require_run(run_dir: str | Path, command: str) -> Kind:
    """The run directory argument of ``embed`` / ``generate`` / ``report``: a finished run
    (``report`` also takes an unfinished one)."""
    kind = classify(run_dir)
    accepted = RUN_KINDS if command == "report" else (RUN,)  # report: any stage, any end
    hint = ""
    if kind.is_data or kind.name in EMBEDDING_KINDS:
        hint = (f"the run directory comes first: diffaug {command} RUN_DIR INPUT -o OUTPUT"
                if command != "report" else "give the -o directory of `diffaug fit`")
    if kind.name in (UNFINISHED_RUN, FAILED_RUN) and kind.name not in accepted:
        from diffaug_genomics.errors import Busy
        from diffaug_genomics.lock_holder import current_writer, still_training

        writer = current_writer(run_dir)  # a fit training it right now: exit 75, try later
        if writer is not None:
            raise Busy(still_training(run_dir, writer))
        raise InputError(f"is {kind.phrase}; {command} needs a finished run (with encoder.pt)",
                         path=run_dir)
    return require(kind, accepted, f"{command} needs a run directory written by `diffaug fit`",
                   hint)


def require_input_for(source: str | Path, modality: str, command: str,
                      run_dir: str | Path | None = None) -> Kind:
    """The data argument of ``embed`` / ``generate`` given a run of ``modality``: data of that
    modality (built-in modalities; a plugin's inputs are its reader's to judge)."""
    kind = classify(source)
    needs = MODALITY_INPUTS.get(modality)
    whose = f"{run_dir} is a {modality} run" if run_dir is not None else f"a {modality} run"
    if kind.name in RUN_KINDS:
        raise InputError(f"is {kind.phrase}; {command} takes the run directory first and the "
                         f"data second: diffaug {command} RUN_DIR INPUT -o OUTPUT", path=source)
    if kind.name in EMBEDDING_KINDS or kind.name == GENERATED:
        raise InputError(f"is {kind.phrase}, an output; {command} needs the data itself"
                         f"{': ' + needs if needs else ''}", path=source)
    if needs is None or kind.name in (UNKNOWN, MISSING):
        if kind.name == MISSING:
            raise InputError("no such file or folder", path=source)
        return kind
    if kind.modality is not None and kind.modality != modality:
        raise InputError(f"is {kind.phrase} ({kind.modality}); {whose}, it needs {needs}",
                         path=source)
    if not kind.is_data and kind.name != UNKNOWN:
        raise InputError(f"is {kind.phrase}; {whose}, it needs {needs}", path=source)
    return kind


def require_training_input(source: str | Path) -> Kind:
    """What ``fit`` trains on: data of some modality (unknown kinds are left to the
    modality's reader, which may be a plugin's)."""
    kind = classify(source)
    if kind.is_data or kind.name in (UNKNOWN, MISSING):
        return kind
    if kind.name in RUN_KINDS:
        hint = "fit trains on data: diffaug fit INPUT -o RUN_DIR (the run directory is -o)"
    elif kind.name in EMBEDDING_KINDS:
        hint = ("fit trains on the data itself (to score embeddings: diffaug evaluate "
                f"{source})")
    else:
        hint = "fit trains on " + "; ".join(MODALITY_INPUTS.values())
    raise InputError(f"is {kind.phrase}; {hint}", path=source)
