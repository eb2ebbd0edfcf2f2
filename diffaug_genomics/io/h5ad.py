"""AnnData ``.h5ad`` files read and written with h5py (neither anndata nor scanpy is needed).

Reading (:func:`read_h5ad`) understands the current on-disk format (anndata >= 0.8:
``encoding-type`` attributes, ``obs`` a group with ``_index``, categorical columns as groups of
``codes`` and ``categories``), anndata 0.7 (categories in ``obs/__categories``) and the older
layout of scanpy's bundled examples (``obs`` a compound dataset, categories in
``uns/<key>_categories``). ``X`` may be dense or sparse (CSR / CSC, both old and new
attributes); it is read into memory dense, ``(n_obs, n_vars) float32``.

Writing (:func:`write_embeddings_h5ad`) produces the current format: ``obs`` (cell names and
the label column, categorical), an empty ``var``, ``obsm['X_diffaug']`` with the embeddings and
``uns['diffaug']`` recording what made them, as scanpy tools do (``obsm[key]``, ``uns[key]``).
``X`` is absent (anndata reads it as None): the file carries embeddings, not expression.

Examples:
    >>> import anndata                                      # doctest: +SKIP
    >>> emb = anndata.read_h5ad("cells_diffaug.h5ad")       # doctest: +SKIP
    >>> adata.obsm["X_diffaug"] = emb[adata.obs_names].obsm["X_diffaug"]   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.samples import ReadOptions, Samples
from diffaug_genomics.io.values import check_real_dtype, first_bad_value

OBSM_KEY = "X_diffaug"
UNS_KEY = "diffaug"
STR = h5py.string_dtype("utf-8")


def _text(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def _attr(node: h5py.HLObject, name: str) -> str | None:
    value = node.attrs.get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------- reading

def _read_matrix(node: h5py.HLObject, path: Path) -> np.ndarray:
    """Dense ``(n, m)`` real numbers (not yet checked for NaN or range) from a dense dataset
    or a CSR / CSC group (validated: see :func:`_read_sparse`)."""
    if isinstance(node, h5py.Dataset):
        if node.ndim != 2:
            raise InputError(f"/X has shape {node.shape}, expected (n_obs, n_vars)", path=path)
        if node.dtype.names is not None or not np.issubdtype(node.dtype, np.number):
            raise InputError(f"/X has dtype {node.dtype}, expected numbers", path=path)
        x = _dense(node.shape, path, lambda: node[()])
        check_real_dtype(x.dtype, path, "/X values")
        return x
    return _read_sparse(node, path)


def _dense(shape: tuple[int, ...], path: Path, make: Any) -> np.ndarray:
    try:
        return make()
    except MemoryError:
        raise InputError(f"/X of shape {tuple(shape)} does not fit in memory as a dense "
                         "float32 matrix", path=path) from None


def _read_sparse(node: h5py.HLObject, path: Path) -> np.ndarray:
    """A CSR / CSC group as a dense ``(n, m) float64`` matrix, every part checked first
    (:func:`check_sparse`)."""
    kind, (n_rows, n_cols), data, indices, steps = check_sparse(node, path)
    values = data.astype(np.float64)
    n_major = n_rows if kind == "csr" else n_cols
    major = np.repeat(np.arange(n_major, dtype=np.int64), steps)
    dense = _dense((n_rows, n_cols), path, lambda: np.zeros((n_rows, n_cols), np.float64))
    if kind == "csr":
        np.add.at(dense, (major, indices), values)  # duplicates add up, as in scipy
    else:
        np.add.at(dense, (indices, major), values)
    return dense


def check_sparse(node: h5py.HLObject, path: Path, where: str = "/X"
                 ) -> tuple[str, tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    """Check a CSR / CSC group before anything is expanded (an untrusted file must not crash
    a reader or move a value to another cell): ``shape`` two non-negative integers; ``data``
    real numbers, ``indices`` and ``indptr`` integers, all 1-D; ``indptr`` of ``n_major + 1``
    entries, from 0, never decreasing, ending at ``len(data) == len(indices)``; every index in
    ``[0, n_minor)``. Returns ``(kind, shape, data, indices int64, entries per major row)``."""
    fmt = _attr(node, "encoding-type") or _attr(node, "h5sparse_format")
    shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
    if fmt is None or shape is None or not {"data", "indices", "indptr"} <= set(node):
        raise InputError(f"{where} is a group but not a CSR/CSC sparse matrix", path=path)
    kind = fmt.replace("_matrix", "")
    if kind not in ("csr", "csc"):
        raise InputError(f"{where} has sparse format {fmt!r}, expected csr or csc", path=path)
    shape_arr = np.asarray(shape).ravel()
    if (shape_arr.size != 2 or shape_arr.dtype.kind not in "iuf"
            or not all(float(v).is_integer() and v >= 0 for v in shape_arr)):
        raise InputError(f"{where} (sparse) has shape attribute {shape!r}, expected two "
                         "non-negative integers", path=path)
    n_rows, n_cols = (int(v) for v in shape_arr)
    parts = {}
    for name in ("data", "indices", "indptr"):
        ds = node[name]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise InputError(f"{where}/{name} (sparse) is not a 1-D dataset", path=path)
        if name != "data" and ds.dtype.kind not in "iu":
            raise InputError(f"{where}/{name} (sparse) has dtype {ds.dtype}, expected integers",
                             path=path)
        if name == "data" and (ds.dtype.names is not None or not np.issubdtype(ds.dtype, np.number)):
            raise InputError(f"{where}/data (sparse) has dtype {ds.dtype}, expected numbers",
                             path=path)
        parts[name] = ds[()]
    data, indices, indptr = parts["data"], parts["indices"].astype(np.int64), parts["indptr"]
    n_major, n_minor = (n_rows, n_cols) if kind == "csr" else (n_cols, n_rows)
    at = f"{where}/indptr ({kind})"
    if len(indptr) != n_major + 1:
        raise InputError(f"{at} has {len(indptr)} entries, expected {n_major + 1} for shape "
                         f"{(n_rows, n_cols)}", path=path)
    indptr = indptr.astype(np.int64)
    if indptr[0] != 0:
        raise InputError(f"{at} starts at {indptr[0]}, expected 0", path=path)
    steps = np.diff(indptr)
    if (steps < 0).any():
        i = int(np.flatnonzero(steps < 0)[0])
        raise InputError(f"{at} decreases at entry {i + 1} ({indptr[i]} -> {indptr[i + 1]})",
                         path=path)
    if len(data) != len(indices) or indptr[-1] != len(data):
        raise InputError(f"{at} ends at {indptr[-1]} but {where}/data has {len(data)} and "
                         f"{where}/indices {len(indices)} entries (all three must agree)", path=path)
    if len(indices) and (indices.min() < 0 or indices.max() >= n_minor):
        bad = int(np.flatnonzero((indices < 0) | (indices >= n_minor))[0])
        axis = "column" if kind == "csr" else "row"
        raise InputError(f"{where}/indices ({kind}) entry {bad} is {axis} {indices[bad]}, outside "
                         f"0..{n_minor - 1}", path=path)
    check_real_dtype(data.dtype, path, f"{where} values")
    return kind, (n_rows, n_cols), data, indices, steps


def _index_of(frame: h5py.HLObject) -> list[str]:
    """Row names of an ``obs`` / ``var`` dataframe in any of the layouts."""
    if isinstance(frame, h5py.Dataset):  # old: compound dataset with an 'index' field
        names = frame.dtype.names or ()
        return _text(frame["index"]) if "index" in names else [str(i) for i in range(len(frame))]
    key = _attr(frame, "_index") or "_index"
    if key in frame:
        return _text(frame[key][()])
    return []


def _columns(frame: h5py.HLObject) -> list[str]:
    if isinstance(frame, h5py.Dataset):
        return [n for n in frame.dtype.names or () if n != "index"]
    index = _attr(frame, "_index") or "_index"
    return [c for c in frame if c not in ("__categories", index)]


def obs_columns(path: str | Path) -> list[str]:
    """The column names of an ``.h5ad`` file's ``obs`` (empty when it has none)."""
    try:
        with h5py.File(path, "r") as f:
            return _columns(f["obs"]) if "obs" in f else []
    except OSError:
        return []


def _column(f: h5py.File, frame_name: str, key: str, path: Path) -> list[str]:
    """One ``obs`` column as strings (categories decoded; a missing category is '')."""
    frame = f[frame_name]
    if isinstance(frame, h5py.Dataset):
        names = frame.dtype.names or ()
        if key not in names:
            raise InputError(f"obs has no column '{key}' (--obs-key); columns: "
                             f"{', '.join(_columns(frame))}", path=path)
        raw = frame[key]
        cats_key = f"{key}_categories"
        if "uns" in f and cats_key in f["uns"]:
            return _decode(raw, _text(f["uns"][cats_key][()]))
        return _text(raw)
    if key not in frame or key == (_attr(frame, "_index") or "_index"):
        raise InputError(f"obs has no column '{key}' (--obs-key); columns: "
                         f"{', '.join(_columns(frame))}", path=path)
    node = frame[key]
    if isinstance(node, h5py.Group):  # anndata >= 0.8 categorical
        if "codes" not in node or "categories" not in node:
            raise InputError(f"obs['{key}'] is a group but not a categorical", path=path)
        return _decode(node["codes"][()], _text(node["categories"][()]))
    cats = frame.get("__categories")
    if cats is not None and key in cats:  # anndata 0.7 categorical
        return _decode(node[()], _text(cats[key][()]))
    return _text(node[()])


def _decode(codes: np.ndarray, categories: list[str]) -> list[str]:
    codes = np.asarray(codes).astype(np.int64)
    return [categories[c] if 0 <= c < len(categories) else "" for c in codes]


def read_h5ad(path: Path, options: ReadOptions) -> Samples:
    """Read ``X`` (dense, ``(n_obs, n_vars) float32``), cell names, gene names and, with
    ``options.obs_key``, the labels from ``obs``."""
    if options.label_column is not None:
        raise InputError("--label-column applies to CSV/TSV input; use --obs-key for .h5ad",
                         path=path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable .h5ad file ({exc.__class__.__name__})", path=path) from None
    with f:
        if "X" not in f:
            raise InputError("no /X matrix (an .h5ad written by diffaug embed holds "
                             "embeddings, not features)", path=path)
        x = _read_matrix(f["X"], path)
        obs_names = _index_of(f["obs"]) if "obs" in f else []
        var_names = _index_of(f["var"]) if "var" in f else []
        labels = _column(f, "obs", options.obs_key, path) if options.obs_key and "obs" in f else None
        if options.obs_key and "obs" not in f:
            raise InputError("no /obs: cannot read --obs-key labels", path=path)
    n = x.shape[0]
    if n == 0 or x.shape[1] == 0:
        raise InputError(f"/X has shape {x.shape}: no cells or no features", path=path)
    ids = obs_names if len(obs_names) == n else [str(i) for i in range(n)]
    names = var_names if len(var_names) == x.shape[1] else None
    found = first_bad_value(x)
    if found is not None:
        r, c, value, why = found
        gene = f"'{names[c]}'" if names else str(c)
        raise InputError(f"cell '{ids[r]}' (row {r}), gene {gene}: {value} {why}", path=path)
    x = np.asarray(x, dtype=np.float32)
    return Samples(x, ids, labels, "h5ad", feature_names=names, label_key=options.obs_key)


# ----------------------------------------------------------------------------------- writing

def _string_array(parent: h5py.Group, name: str, values: Sequence[str]) -> None:
    ds = parent.create_dataset(name, data=np.asarray(list(values), dtype=object), dtype=STR)
    ds.attrs["encoding-type"] = "string-array"
    ds.attrs["encoding-version"] = "0.2.0"


def _dataframe(parent: h5py.Group, name: str, index: Sequence[str],
               columns: Mapping[str, Sequence[str]]) -> None:
    g = parent.create_group(name)
    g.attrs["encoding-type"] = "dataframe"
    g.attrs["encoding-version"] = "0.2.0"
    g.attrs["_index"] = "_index"
    if columns:
        g.attrs.create("column-order", data=list(columns), dtype=STR)
    else:
        g.attrs["column-order"] = np.zeros(0, dtype=np.float64)  # what anndata writes
    _string_array(g, "_index", index)
    for col, values in columns.items():
        categories = sorted(set(values))
        lookup = {c: i for i, c in enumerate(categories)}
        cg = g.create_group(col)
        cg.attrs["encoding-type"] = "categorical"
        cg.attrs["encoding-version"] = "0.2.0"
        cg.attrs["ordered"] = False
        dtype = np.int8 if len(categories) < 128 else np.int32
        codes = cg.create_dataset("codes", data=np.asarray([lookup[v] for v in values],
                                                          dtype=dtype))
        codes.attrs["encoding-type"] = "array"
        codes.attrs["encoding-version"] = "0.2.0"
        _string_array(cg, "categories", categories)


def write_embeddings_h5ad(path: str | Path, embeddings: np.ndarray, ids: Sequence[str],
                          labels: Sequence[str] | None = None, label_key: str | None = None,
                          info: Mapping[str, Any] | None = None,
                          extra_obs: Mapping[str, Sequence[str]] | None = None) -> None:
    """Write embeddings ``(N, D) float32`` as AnnData: ``obsm['X_diffaug']``, ``obs_names`` =
    ``ids``, ``obs[label_key]`` (categorical) when labels are given, ``uns['diffaug']`` = ``info``
    (strings and numbers). Callers wrap this in ``atomic_output``."""
    from diffaug_genomics.guards import require_finite
    from diffaug_genomics.io.atomic import create_hdf5

    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"embeddings {emb.shape} do not match {len(ids)} ids")
    require_finite(emb, "embeddings")
    columns = {}
    if labels is not None:
        columns[label_key or "label"] = list(labels)
    for name, values in (extra_obs or {}).items():
        columns.setdefault(name, list(values))
    with create_hdf5(path) as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        _dataframe(f, "obs", list(ids), columns)
        _dataframe(f, "var", [], {})
        for name in ("varm", "obsp", "varp", "layers"):
            _dict_group(f, name)
        add_embeddings(f, emb, info or {})


def _dict_group(parent: h5py.Group, name: str) -> h5py.Group:
    """The ``dict`` group ``name`` of ``parent``, made when missing."""
    g = parent.require_group(name)
    if "encoding-type" not in g.attrs:
        g.attrs["encoding-type"] = "dict"
        g.attrs["encoding-version"] = "0.1.0"
    return g


def add_embeddings(f: h5py.File, emb: np.ndarray, info: Mapping[str, Any]) -> None:
    """Put ``obsm['X_diffaug'] = emb`` and ``uns['diffaug'] = info`` (strings and numbers;
    None left out) into an open AnnData file (current layout), replacing earlier ones."""
    obsm = _dict_group(f, "obsm")
    if OBSM_KEY in obsm:
        del obsm[OBSM_KEY]
    ds = obsm.create_dataset(OBSM_KEY, data=emb)
    ds.attrs["encoding-type"] = "array"
    ds.attrs["encoding-version"] = "0.2.0"
    uns = _dict_group(f, "uns")
    if UNS_KEY in uns:
        del uns[UNS_KEY]
    meta = _dict_group(uns, UNS_KEY)
    for key, value in info.items():
        if value is None:
            continue
        if isinstance(value, str):
            d = meta.create_dataset(key, data=value, dtype=STR)
            d.attrs["encoding-type"] = "string"
        else:
            d = meta.create_dataset(key, data=value)
            d.attrs["encoding-type"] = "numeric-scalar"
        d.attrs["encoding-version"] = "0.2.0"


def is_embeddings_h5ad(path: str | Path) -> bool:
    """True for an ``.h5ad`` holding ``obsm['X_diffaug']`` (written by ``diffaug embed``)."""
    try:
        with h5py.File(path, "r") as f:
            return "obsm" in f and isinstance(f["obsm"], h5py.Group) and OBSM_KEY in f["obsm"]
    except OSError:
        return False


def read_embeddings_h5ad(path: str | Path, obs_key: str | None = None
                         ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    """``(embeddings (N, D) float32, ids, labels or None, info)`` from an embeddings ``.h5ad``.

    Labels come from ``obs[obs_key]``, by default from the column named in
    ``uns['diffaug']['label_key']``.
    """
    p = Path(path)
    with h5py.File(p, "r") as f:
        from diffaug_genomics.io.h5 import embeddings_matrix

        emb = embeddings_matrix(f["obsm"][OBSM_KEY], p, f"obsm['{OBSM_KEY}']")
        ids = _index_of(f["obs"]) if "obs" in f else []
        info: dict[str, Any] = {}
        if "uns" in f and UNS_KEY in f["uns"]:
            for key, ds in f["uns"][UNS_KEY].items():
                value = ds[()]
                info[key] = value.decode() if isinstance(value, bytes) else (
                    value.item() if hasattr(value, "item") else value)
        key = obs_key or info.get("label_key")
        labels = _column(f, "obs", key, p) if key and "obs" in f else None
    if len(ids) != len(emb):
        ids = [str(i) for i in range(len(emb))]
    return emb, ids, labels, info
