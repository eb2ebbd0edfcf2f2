"""Every dotted key of a run configuration, read from the dataclasses themselves (so a key
added to :mod:`diffaug_genomics.config_schema` is known here at once), and the closest known
keys to a mistyped one."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diffaug_genomics.config_schema import Config


@dataclass(frozen=True)
class KeyInfo:
    """A dotted key, the dataclass and field that hold it, and the field's annotation."""

    key: str
    owner: type
    field: dataclasses.Field
    annotation: Any


def iter_keys(cls: type = Config, prefix: str = "") -> Iterator[KeyInfo]:
    """Every leaf key of ``cls`` in declaration order (``encoder.width``, ...)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_keys(hint, f"{prefix}{f.name}.")
        else:
            yield KeyInfo(f"{prefix}{f.name}", cls, f, hint)


def all_keys() -> list[str]:
    """Every dotted key of :class:`Config`."""
    return [k.key for k in iter_keys()]


def closest_keys(key: str, n: int = 3) -> list[str]:
    """Known keys (or sections) closest to ``key``: a typo, another case, a missing or wrong
    section (``width`` -> ``encoder.width``); the best matches only."""
    keys = all_keys()
    candidates = keys + sorted({k.split(".", 1)[0] for k in keys if "." in k})
    text = key.lower()

    def score(candidate: str) -> float:
        c = candidate.lower()
        whole = difflib.SequenceMatcher(None, text, c).ratio()
        leaf = difflib.SequenceMatcher(None, text.rsplit(".", 1)[-1], c.rsplit(".", 1)[-1]).ratio()
        return max(whole, leaf - 0.05)

    ranked = sorted(((score(c), c) for c in candidates), key=lambda sc: -sc[0])
    best = ranked[0][0] if ranked else 0.0
    if best < 0.6:
        return []
    return [c for s, c in ranked if s >= best - 0.05][:n]


def unknown_key_message(key: str) -> str:
    """``unknown config key 'encoder.widht' (did you mean 'encoder.width'?); ...``"""
    close = closest_keys(key)
    hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
    return (f"unknown config key '{key}'{hint}; `diffaug config` lists every key with its "
            "default, range and meaning")
