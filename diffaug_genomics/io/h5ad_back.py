"""Embeddings written back into the user's own AnnData (``embed`` of an ``.h5ad`` input to an
``.h5ad`` output), as scanpy tools do: everything the input holds (``X``, ``var``, ``obs``,
``obsm``, ``layers``, ``uns``...) is kept, ``obsm['X_diffaug']`` and ``uns['diffaug']`` are
added.

With the scverse ``anndata`` package (``pip install 'diffaug-genomics[anndata]'``) the file is
read and written by anndata itself, so every element type (dataframes, sparse layers, nested
``uns``, nullable columns) and older on-disk layouts come out in the current format. Without
it the input is copied byte for byte and the two entries are added with h5py; that needs the
current on-disk layout (anndata >= 0.8: groups with ``encoding-type``), an older file is
refused naming the extra.

Either way the file is untrusted: every sparse matrix in it is checked
(:func:`~diffaug_genomics.io.h5ad.check_sparse`) before anndata or scipy reads it.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5ad import OBSM_KEY, UNS_KEY, add_embeddings, check_sparse

SPARSE = ("csr_matrix", "csc_matrix")


def check_sparse_elements(path: Path) -> None:
    """Every CSR / CSC group of the file (``X``, ``layers``, ``obsm``, ``obsp``, ``raw``...),
    checked as :func:`check_sparse` does (raises :class:`InputError` naming it)."""
    groups: list[tuple[str, h5py.Group]] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Group):
            kind = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format"))
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind in SPARSE or kind in ("csr", "csc"):
                groups.append((name, node))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
            for name, node in groups:
                check_sparse(node, path, f"/{name}")
    except OSError as exc:
        raise InputError(f"not a readable .h5ad file ({exc.__class__.__name__})",
                         path=path) from None


def _clean(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if v is not None}


def write_back(dst: Path, src: Path, embeddings: np.ndarray, info: Mapping[str, Any]) -> str:
    """Write ``src``'s AnnData with ``obsm['X_diffaug'] = embeddings (n_obs, D) float32`` and
    ``uns['diffaug'] = info`` added at ``dst`` (a temporary path: callers wrap this in
    ``atomic_output``). Returns how it was written, for the summary line."""
    emb = np.asarray(embeddings, dtype=np.float32)
    check_sparse_elements(src)
    try:
        import anndata
    except ImportError:
        _copy_and_add(dst, src, emb, info)
        return "the input's AnnData with obsm['X_diffaug'] added (copied with h5py)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's notes on moving old layouts
            adata = anndata.read_h5ad(src)
    except Exception as exc:  # anndata raises many kinds on damaged files
        raise InputError(f"anndata cannot read it ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                         path=src) from None
    if adata.n_obs != len(emb):
        raise InputError(f"holds {adata.n_obs} cells but {len(emb)} were embedded", path=src)
    adata.obsm[OBSM_KEY] = emb
    adata.uns[UNS_KEY] = _clean(info)
    adata.write_h5ad(dst)
    from importlib.metadata import version

    return f"the input's AnnData with obsm['X_diffaug'] added (anndata {version('anndata')})"


def _copy_and_add(dst: Path, src: Path, emb: np.ndarray, info: Mapping[str, Any]) -> None:
    """The h5py way (module docstring): copy, then add the two entries in place."""
    with h5py.File(src, "r") as f:
        current = isinstance(f.get("obs"), h5py.Group) and "encoding-type" in f.attrs
        obsm = f.get("obsm")
        if not current or (obsm is not None and not isinstance(obsm, h5py.Group)):
            raise InputError("is in an older AnnData layout that cannot be extended in place: "
                             "install anndata (pip install 'diffaug-genomics[anndata]') to "
                             "write it back in the current format, or write -o EMB.h5",
                             path=src)
        n_obs = _n_obs(f)
    if n_obs is not None and n_obs != len(emb):
        raise InputError(f"holds {n_obs} cells but {len(emb)} were embedded", path=src)
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        add_embeddings(f, emb, info)


def _n_obs(f: h5py.File) -> int | None:
    obs = f["obs"]
    key = obs.attrs.get("_index", "_index")
    key = key.decode() if isinstance(key, bytes) else str(key)
    return int(obs[key].shape[0]) if key in obs else None
