"""Where ``embed``'s embeddings go: the output's name decides (:mod:`.output_formats`).

- ``.h5`` / ``.hdf5``: ``embeddings/1`` HDF5 (``/embeddings``, ``/ids``, ``/labels``, and
  ``/regions`` for DNA: which coordinates of its record each row covers), any modality;
- ``.h5ad``: AnnData, any modality. An ``.h5ad`` input is written back whole with
  ``obsm['X_diffaug']`` added (:mod:`.io.h5ad_back`); any other input gives a new AnnData:
  ``obs_names`` = the ids, the labels (and DNA regions) in ``obs``, ``obsm['X_diffaug']``,
  ``uns['diffaug']``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.modalities.interface import RunInput
from diffaug_genomics.output_formats import H5AD, HDF5, OutputFormat

EMBED_FORMATS = (HDF5, H5AD)
EMBED_WHAT = {"hdf5": "embeddings HDF5", "h5ad": "AnnData with obsm['X_diffaug']"}


def anndata_source(inp: RunInput, source: str | Path) -> Path | None:
    """The input file when it was an ``.h5ad`` (to write it back), else None."""
    samples = inp.info.get("samples")
    if samples is not None and getattr(samples, "source_format", None) == "h5ad":
        return Path(source)
    return None


def label_key(inp: RunInput) -> str:
    """The column the labels came from (``--obs-key`` / ``--label-column``), else ``label``."""
    samples = inp.info.get("samples")
    return getattr(samples, "label_key", None) or "label"


def write_embeddings_output(path: Path, fmt: OutputFormat, emb: np.ndarray, ids: list[str],
                            labels: list[str] | None, attrs: dict[str, Any],
                            inp: RunInput, source: str | Path,
                            regions: list[str] | None = None) -> str:
    """Write ``emb (N, D) float32`` at ``path`` (a temporary file) in ``fmt``; returns what
    was written, for the summary line."""
    if fmt.name == "h5ad":
        original = anndata_source(inp, source)
        key = label_key(inp)
        info = {**attrs, "label_key": key if labels is not None else None}
        if original is not None:
            from diffaug_genomics.io.h5ad_back import write_back

            return write_back(path, original, emb, info)
        from diffaug_genomics.io.h5ad import write_embeddings_h5ad

        columns = {"region": regions} if regions is not None else {}
        write_embeddings_h5ad(path, emb, ids, labels, key, info, extra_obs=columns)
        return "AnnData .h5ad with obsm['X_diffaug']"
    from diffaug_genomics.io.h5 import write_embeddings

    write_embeddings(path, emb, ids, labels, attrs, regions=regions)
    return "embeddings HDF5"
