"""Checks of numeric input values shared by the image and table readers: real numbers only, no
NaN or infinity, nothing beyond float32's range; errors name the first bad row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffaug_genomics.errors import InputError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_real_dtype(dtype: np.dtype, path: Path, what: str = "values") -> None:
    """Real numbers (or booleans) only: strings, records, objects and complex numbers (whose
    imaginary part a conversion would drop) are an :class:`InputError`."""
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"{what} are complex numbers ({dtype}); expected real numbers",
                         path=path)
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise InputError(f"{what} have dtype {dtype}, expected numbers", path=path)


def first_bad_value(x: np.ndarray) -> tuple[int, int, float, str] | None:
    """``(row, column, value, why)`` of the first value of ``x`` (rows flattened) that is NaN,
    infinite or beyond float32's range; None when there is none."""
    if x.dtype.kind != "f" or x.size == 0:
        return None
    x64 = np.asarray(x, dtype=np.float64)
    x64 = x64.reshape(len(x64), -1) if x64.ndim > 1 else x64.reshape(-1, 1)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x64) | (np.abs(x64) > FLOAT32_MAX)
    if not bad.any():
        return None
    r, c = (int(i) for i in np.argwhere(bad)[0])
    value = float(x64[r, c])
    why = ("is not a finite number" if not np.isfinite(value)
           else f"is beyond float32's range (|x| <= {FLOAT32_MAX:.3g})")
    return r, c, value, why


def to_float32(x: np.ndarray, path: Path, names: list[str] | None = None,
               lines: list[int] | None = None, ids: list[str] | None = None,
               what: str = "values") -> np.ndarray:
    """``x`` as float32, checked on its way there: real numbers only, no NaN or infinity, and
    nothing beyond float32's range (1e300 would become infinity). Errors name the first bad
    row (its line or id) and column."""
    check_real_dtype(x.dtype, path, what)
    found = first_bad_value(x)
    if found is not None:
        r, c, value, why = found
        column = f"column '{names[c]}'" if names else f"column {c}"
        if lines is not None:
            raise InputError(f"{column}: {value} {why}", path=path, line=lines[r])
        where = f"row {r}" + (f" ('{ids[r]}')" if ids is not None else "")
        raise InputError(f"{where}, {column}: {value} {why}", path=path)
    return np.asarray(x, dtype=np.float32)

