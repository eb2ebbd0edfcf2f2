"""What ``diffaug evaluate`` can score: embeddings, or raw features as a baseline.

- an ``embeddings/1`` HDF5 file from ``diffaug embed`` (``/labels`` when stored);
- an ``.h5ad`` written by ``diffaug embed`` (``obsm['X_diffaug']``, labels from ``obs``);
- any image or tabular input (CSV/TSV, ``.npy``, ``.h5ad``, image folder or HDF5): its raw
  values, flattened per sample, labels from ``--label-column``, ``--obs-key`` or image
  sub-folders. That is the "raw features" reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.samples import ReadOptions


def read_for_evaluation(path: str | Path, options: ReadOptions
                        ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """``(features (N, D) float32, ids, labels or None, attributes)`` of one input."""
    from diffaug_genomics.io.h5 import EMBEDDINGS_SCHEMA, is_hdf5, read_embeddings, schema_of

    p = Path(path)
    if p.is_file() and is_hdf5(p):
        if schema_of(p) == EMBEDDINGS_SCHEMA:
            return read_embeddings(p)
        from diffaug_genomics.io.h5ad import is_embeddings_h5ad, read_embeddings_h5ad

        if is_embeddings_h5ad(p):
            emb, ids, labels, info = read_embeddings_h5ad(p, options.obs_key)
            return emb, ids, labels, {"format": "h5ad", **info}
    from diffaug_genomics.models.registry import get_modality
    from diffaug_genomics.samples import detect_modality, read_samples

    kind = detect_modality(p) if p.exists() else "dna"
    if kind == "dna":  # not embeddings: let the embeddings reader say why
        return read_embeddings(p)
    samples = read_samples(get_modality(kind), p, options)
    x = np.asarray(samples.values, dtype=np.float32).reshape(len(samples.values), -1)
    return x, samples.ids, samples.labels, {"raw_features": True, "modality": kind,
                                           "source_format": samples.source_format}
