"""The modality registry's former import path, kept for third-party code written against it
(``from diffaug_genomics.models.registry import get_modality, Modality, register``).

Everything lives in :mod:`diffaug_genomics.modalities` now (the interface in
:mod:`~diffaug_genomics.modalities.base`, the registry in
:mod:`~diffaug_genomics.modalities.registry`); this module only re-exports it.
"""

from diffaug_genomics.modalities.base import Augment, Modality, build_head
from diffaug_genomics.modalities.dna import DNA
from diffaug_genomics.modalities.registry import (
    _REGISTRY,
    ENTRY_POINT_GROUP,
    available_modalities,
    get_modality,
    load_backbone,
    register,
    validate_config,
)

__all__ = ["DNA", "ENTRY_POINT_GROUP", "Augment", "Modality", "_REGISTRY",
           "available_modalities", "build_head", "get_modality", "load_backbone", "register",
           "validate_config"]
