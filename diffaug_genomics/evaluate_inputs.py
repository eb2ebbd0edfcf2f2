"""What ``diffaug evaluate`` can score: embeddings, or raw features as a baseline.

- an ``embeddings/1`` HDF5 file from ``diffaug embed`` (``/labels`` when stored);
- an ``.h5ad`` written by ``diffaug embed`` (``obsm['X_diffaug']``, labels from ``obs``);
- any image or tabular input (CSV/TSV, ``.npy``, ``.h5ad``, image folder or HDF5): its raw
  values, flattened per sample, labels from ``--label-column``, ``--obs-key`` or image
  sub-folders. That is the "raw features" reference;
- DNA (FASTA, or one-hot HDF5 from ``diffaug encode``) with ``--features
  kmer:K|ckmer:K|gc|onehot``:
  training-free features of the sequences themselves (:func:`sequence_features`), the classical
  references a learned embedding should beat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.input_kinds import (
    ALIGNMENTS,
    ANNDATA,
    CHECKPOINT,
    CONFIG,
    EMBEDDINGS_H5AD,
    FASTA,
    FASTQ,
    FOLDER,
    GENERATED,
    HTML,
    IMAGE_FOLDER,
    JSON_FILE,
    ONEHOT,
    RUN_KINDS,
    STDIN,
    TABLE,
    classify,
)
from diffaug_genomics.io.h5 import (
    EMBEDDINGS_SCHEMA,
    ONEHOT_SCHEMA,
    is_hdf5,
    read_embeddings,
    schema_of,
)
from diffaug_genomics.io.h5ad import is_embeddings_h5ad, read_embeddings_h5ad
from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.modalities.detect import detect_modality
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.modalities.sequences import iter_chunks

MAX_FEATURE_K = 6
"""``--features kmer:K`` allows K up to 6 (4**6 = 4,096 frequencies per sequence)."""

FASTA_BATCH = 4096


def read_for_evaluation(path: str | Path, options: ReadOptions, features: str | None = None
                        ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """``(features (N, D) float32, ids, labels or None, attributes)`` of one input.

    ``features`` (``kmer:K``, ``gc``, ``onehot``) scores DNA sequences themselves instead
    (:func:`sequence_features`)."""
    if features is not None:
        return sequence_features(path, features)
    p = Path(path)
    _require_scorable(p)
    if p.is_file() and is_hdf5(p):
        if schema_of(p) == EMBEDDINGS_SCHEMA:
            return read_embeddings(p)
        if is_embeddings_h5ad(p):
            emb, ids, labels, info = read_embeddings_h5ad(p, options.obs_key)
            return emb, ids, labels, {"format": "h5ad", **info}
    if not p.exists():  # the embeddings reader says so
        return read_embeddings(p)
    # not embeddings: the input's modality gives its raw features or says why not
    modality = get_modality(detect_modality(p))
    return modality.io.raw_features(modality.name, p, options)


def parse_features(spec: str) -> tuple[str, int]:
    """``"kmer:K"`` | ``"ckmer:K"`` (1 <= K <= 6) | ``"gc"`` | ``"onehot"`` -> ``(kind, k)`` for
    :func:`~diffaug_genomics.kmers.baseline_features` (k = 0 unless k-mers)."""
    kind, _, k_text = spec.strip().lower().partition(":")
    if kind in ("gc", "onehot") and not k_text:
        return kind, 0
    if kind in ("kmer", "ckmer") and k_text.isdigit() and 1 <= int(k_text) <= MAX_FEATURE_K:
        return kind, int(k_text)
    raise InputError(f"--features: expected kmer:K or ckmer:K (K = 1..{MAX_FEATURE_K}), gc or "
                     f"onehot (got {spec!r})")


def sequence_features(path: str | Path, spec: str
                      ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """Training-free features of DNA sequences: ``(features (N, F) float32, ids, labels or
    None, attributes)``.

    ``path`` is a FASTA file (any lengths; no labels, give ``--labels``) or a one-hot HDF5 from
    ``diffaug encode`` (its ``/labels`` when stored). ``spec`` as in :func:`parse_features`:
    k-mer frequencies ``(N, 4**K)`` (canonical: strand-symmetrised), GC fraction ``(N, 1)``, or the flattened one-hot
    ``(N, 4 * L)`` (HDF5 only: FASTA rows have no common length).
    """
    from diffaug_genomics.kmers import baseline_features

    kind, k = parse_features(spec)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=p)
    parts: list[np.ndarray] = []
    ids: list[str] = []
    labels: list[str] | None = None
    if is_hdf5(p):
        if schema_of(p) != ONEHOT_SCHEMA:
            raise InputError("--features needs DNA sequences (FASTA or an HDF5 file from "
                             "`diffaug encode`); this HDF5 file holds something else", path=p)
        for chunk in iter_chunks(p):
            parts.append(baseline_features(chunk.onehot, kind, k))
            ids += chunk.ids
            if chunk.labels is not None:
                labels = (labels or []) + chunk.labels
    else:
        if kind == "onehot":
            raise InputError("--features onehot needs equal-length rows: encode the FASTA with "
                             "`diffaug encode --length L` first", path=p)
        for batch_ids, onehot in _fasta_batches(p):
            parts.append(baseline_features(onehot, kind, k))
            ids += batch_ids
    if not ids:
        raise InputError("no sequences", path=p)
    attrs = {"features": f"{kind}:{k}" if k else kind, "source": str(p)}
    return np.concatenate(parts), ids, labels, attrs


def _fasta_batches(path: Path):  # noqa: ANN202 - Iterator[tuple[list[str], np.ndarray]]
    """FASTA records in batches, each one-hot encoded padded to its own longest record."""
    from itertools import islice

    from diffaug_genomics.io.fasta import read_fasta
    from diffaug_genomics.io.onehot import encode_records

    records = read_fasta(path)
    while batch := list(islice(records, FASTA_BATCH)):
        longest = max(len(seq) for _, seq in batch) or 1
        for enc in encode_records(batch, longest, "pad", chunk_records=len(batch)):
            yield list(enc.ids), enc.onehot


def _require_scorable(path: Path) -> None:
    """Refuse, saying what it is, an input ``evaluate`` cannot score without ``--features``."""
    kind = classify(path)
    if kind.name in RUN_KINDS:
        raise InputError(f"is {kind.phrase}; evaluate scores embeddings: diffaug embed "
                         f"{path} INPUT -o emb.h5, then diffaug evaluate emb.h5 --labels "
                         f"labels.tsv (or diffaug report {path})", path=path)
    if kind.name in (FASTA, ONEHOT, STDIN):
        raise InputError(f"is {kind.phrase}; evaluate scores embeddings (from `diffaug embed`) "
                         "or, with --features kmer:6 (or gc, onehot), the sequences themselves",
                         path=path)
    if kind.name in (GENERATED, JSON_FILE, CHECKPOINT, CONFIG, HTML, FASTQ, ALIGNMENTS, FOLDER):
        raise InputError(f"is {kind.phrase}; evaluate scores embeddings (HDF5 or .h5ad from "
                         "`diffaug embed`) or an image / table input's raw features", path=path)


def no_labels_error(path: str | Path) -> InputError:
    """The error for an input without labels: how to give them for this kind of input."""
    from diffaug_genomics.io.h5ad import obs_columns

    kind = classify(path)
    if kind.name in (ANNDATA, EMBEDDINGS_H5AD):
        cols = obs_columns(path)
        shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
        how = (f"name an obs column with --obs-key (obs columns: {shown or 'none'})"
               " or give --labels TSV (columns id, label)")
    elif kind.name in (TABLE,):
        how = "name the label column with --label-column COLUMN, or give --labels TSV"
    elif kind.name == IMAGE_FOLDER:
        how = "put the images in one sub-folder per class, or give --labels TSV"
    else:
        how = "give --labels TSV (columns id, label)"
    return InputError(f"no labels to score with: {how}", path=path)


def select_labelled(x: np.ndarray, ids: list[str], mapping: dict[str, str],
                    labels_path: str | Path, path: str | Path
                    ) -> tuple[np.ndarray, list[str], str | None]:
    """Rows of ``x (N, D)`` whose id has a label in ``mapping`` (window ids take their
    record's), their labels, and a note when some rows had none (None when all did).

    Raises:
        InputError: no id of ``path`` has a label in ``labels_path``.
    """
    from diffaug_genomics.io.labels import label_for

    labels = [label_for(rid, mapping) for rid in ids]
    keep = [i for i, label in enumerate(labels) if label is not None]
    if not keep:
        example = next(iter(mapping), "")
        raise InputError(f"no id of {path} has a label here (its ids look like "
                         f"'{ids[0] if ids else ''}', these like '{example}')",
                         path=labels_path)
    if len(keep) == len(ids):
        return x, labels, None  # type: ignore[return-value]
    first = next(rid for rid, label in zip(ids, labels, strict=True) if label is None)
    note = (f"{path}: scored the {len(keep)} rows with a label in {labels_path}; "
            f"{len(ids) - len(keep)} rows have none and were left out (first: '{first}')")
    return x[keep], [labels[i] for i in keep], note
