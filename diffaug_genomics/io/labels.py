"""Record labels: a tab-separated file with a header naming the columns ``id`` and ``label``.

Other columns are allowed and ignored; lines starting with ``#`` and blank lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from diffaug_genomics.errors import InputError

_WINDOW_SUFFIX = re.compile(r"^(.*):(\d+)-(\d+)$")


def read_labels(path: str | Path) -> dict[str, str]:
    """Read a labels TSV into ``{id: label}``.

    Raises:
        InputError: naming the file and line for a missing file, a header without ``id`` and
            ``label`` columns, a line with too few fields, an empty id, or a duplicate id.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.is_dir():
        raise InputError("is a directory, not a labels TSV", path=p)
    mapping: dict[str, str] = {}
    id_col = label_col = -1
    try:
        with open(p, encoding="utf-8", newline="") as fh:
            for number, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.split("\t")
                if id_col < 0:
                    names = [f.strip() for f in fields]
                    if "id" not in names or "label" not in names:
                        raise InputError(f"header must name the columns 'id' and 'label' "
                                         f"(tab-separated), found {names}", path=p, line=number)
                    id_col, label_col = names.index("id"), names.index("label")
                    continue
                if len(fields) <= max(id_col, label_col):
                    raise InputError(f"expected at least {max(id_col, label_col) + 1} "
                                     f"tab-separated fields, found {len(fields)}", path=p,
                                     line=number)
                rid, label = fields[id_col].strip(), fields[label_col].strip()
                if not rid:
                    raise InputError("empty id", path=p, line=number)
                if rid in mapping:
                    raise InputError(f"duplicate id '{rid}'", path=p, line=number)
                mapping[rid] = label
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path=p) from None
    if id_col < 0:
        raise InputError("empty labels file (no header)", path=p)
    return mapping


def label_for(rid: str, mapping: Mapping[str, str]) -> str | None:
    """Label of ``rid``; a window id ``rec:start-end`` falls back to the label of ``rec``."""
    label = mapping.get(rid)
    if label is None:
        match = _WINDOW_SUFFIX.match(rid)
        if match:
            label = mapping.get(match.group(1))
    return label


def align_labels(ids: Iterable[str], mapping: Mapping[str, str],
                 path: str | Path | None = None) -> list[str]:
    """Labels in the order of ``ids``, using :func:`label_for` (window ids take their record's).

    Raises:
        InputError: naming the labels file (``path``) and the first id it lacks.
    """
    out = []
    for rid in ids:
        label = label_for(rid, mapping)
        if label is None:
            raise InputError(f"no label for id '{rid}'", path=path, record=rid)
        out.append(label)
    return out
