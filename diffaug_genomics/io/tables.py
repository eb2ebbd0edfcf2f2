"""Tabular inputs: CSV / TSV with a header line, and ``.npy`` matrices.

CSV / TSV rules:

- the first line is a header naming the columns (a first line made only of numbers is refused:
  it is data, and reading it as names would silently drop a sample);
- an empty first header field (what ``pandas.DataFrame.to_csv`` writes for the index) marks a
  column of row ids; otherwise ids are the 0-based data row numbers (``"0"``, ``"1"``, ...);
- ``label_column`` names a column of labels: it is never a feature;
- every other cell must be a finite number. A row with the wrong number of fields, an empty or
  non-numeric cell, NaN or infinity is an :class:`InputError` naming the file, the line and the
  column.

The delimiter is a tab for ``.tsv`` / ``.tab`` and a comma for ``.csv`` (``.gz`` allowed).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.samples import ReadOptions, Samples, load_npy, open_text
from diffaug_genomics.io.values import to_float32


def _delimiter(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".tab")) else ","


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_table(path: Path, options: ReadOptions) -> Samples:
    """Read a CSV / TSV file (rules in the module docstring) into ``(N, D) float32`` samples."""
    if options.obs_key is not None:
        raise InputError("--obs-key applies to .h5ad input; use --label-column for CSV/TSV",
                         path=path)
    delim = _delimiter(path)
    values: list[np.ndarray] = []
    ids: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    try:
        with open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delim)
            header = None
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line
                if header is None:
                    header = [f.strip() for f in fields]
                    if all(_is_number(f) for f in header):
                        raise InputError("the first line looks like data, not a header: CSV/TSV "
                                         "input needs a header line naming the columns",
                                         path=path, line=reader.line_num)
                    id_col = 0 if header[0] == "" else None
                    label_col = None
                    if options.label_column is not None and (
                            options.label_column in header or not options.label_optional):
                        if options.label_column not in header:
                            raise InputError(f"no column '{options.label_column}' (--label-column)"
                                             f" in the header", path=path, line=reader.line_num)
                        label_col = header.index(options.label_column)
                    feature_cols = [i for i in range(len(header)) if i not in (id_col, label_col)]
                    names = [header[i] for i in feature_cols]
                    if not feature_cols:
                        raise InputError("no feature columns", path=path, line=reader.line_num)
                    continue
                if len(fields) != len(header):
                    raise InputError(f"expected {len(header)} fields (as in the header), found "
                                     f"{len(fields)}", path=path, line=reader.line_num)
                cells = [fields[i] for i in feature_cols]
                try:
                    row = np.array(cells, dtype=np.float64)
                except ValueError:
                    for i, cell in zip(feature_cols, cells, strict=True):
                        if not _is_number(cell):
                            what = "empty cell" if not cell.strip() else f"not a number: {cell!r}"
                            raise InputError(f"column '{header[i]}': {what}", path=path,
                                             line=reader.line_num) from None
                    raise
                values.append(row)
                lines.append(reader.line_num)
                ids.append(fields[id_col].strip() if id_col is not None else str(len(ids)))
                if label_col is not None:
                    labels.append(fields[label_col].strip())
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path=path) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", path=path) from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc.__class__.__name__}: {exc})", path=path) from None
    if header is None:
        raise InputError("empty file (no header)", path=path)
    if not values:
        raise InputError("no data rows after the header", path=path)
    x = to_float32(np.stack(values), path, names, lines=lines)
    return Samples(x, ids, labels if label_col is not None else None,
                   "tsv" if delim == "\t" else "csv", feature_names=names,
                   label_key=options.label_column if label_col is not None else None)


def read_npy_table(path: Path, options: ReadOptions) -> Samples:
    """Read an ``(N, D)`` ``.npy`` matrix (a higher-rank array is flattened per sample)."""
    if options.label_column is not None or options.obs_key is not None:
        raise InputError("--label-column / --obs-key do not apply to .npy input (it has no "
                         "columns); give labels to evaluate with --labels", path=path)
    x = load_npy(path)
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise InputError(f"expected a non-empty (N, D) array, got shape {x.shape}", path=path)
    x = to_float32(x.reshape(len(x), -1), path)
    return Samples(x, [str(i) for i in range(len(x))], None, "npy")


def read_tabular(path: Path, options: ReadOptions) -> Samples:
    """Any tabular input: CSV / TSV, ``.npy`` or ``.h5ad``, chosen by suffix."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return read_npy_table(path, options)
    if suffix == ".h5ad":
        from diffaug_genomics.io.h5ad import read_h5ad

        return read_h5ad(path, options)
    if path.is_dir():
        raise InputError("is a folder; tabular input is a CSV/TSV, .npy or .h5ad file", path=path)
    from diffaug_genomics.io.h5 import is_hdf5

    if is_hdf5(path):
        from diffaug_genomics.io.h5ad import read_h5ad

        return read_h5ad(path, options)
    return read_table(path, options)
