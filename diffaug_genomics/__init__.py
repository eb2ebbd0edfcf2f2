"""diffaug-genomics: DiffAug (Zang et al., ICML 2024) for DNA sequences, images and tables.

The public API is imported lazily so that ``import diffaug_genomics`` (and ``diffaug --help``)
does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffaug_genomics._version import __version__

_PUBLIC = {
    "read_fasta": "diffaug_genomics.io.fasta",
    "encode_fasta": "diffaug_genomics.encode",
    "encode_bed": "diffaug_genomics.encode",
    "OneHotH5Dataset": "diffaug_genomics.data",
    "InputError": "diffaug_genomics.errors",
    "DiffaugError": "diffaug_genomics.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'diffaug_genomics' has no attribute {name!r}")
