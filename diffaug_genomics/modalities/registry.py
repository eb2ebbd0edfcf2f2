"""The registry of modalities: built-ins, third-party entry points and ``--backbone`` plugins.

A :class:`~diffaug_genomics.modalities.base.Modality` bundles what the loop needs to know
about a kind of data (:mod:`diffaug_genomics.modalities.base`). Built-in modalities: ``dna``
(:mod:`.dna`), ``image`` (:mod:`.image`) and ``tabular`` (:mod:`.tabular`), the last two
imported on first use. Third parties add theirs without editing the library, in one of two
ways:

- a Python entry point in the group :data:`ENTRY_POINT_GROUP` (``diffaug_genomics.backbones``)
  whose name is the modality's name and whose object is a zero-argument factory returning a
  :class:`Modality`; it is loaded the first time that name is asked for;
- ``--backbone package.module:factory`` on the command line (:func:`load_backbone`): the user
  names code to import, the library imports it and calls the factory.

Configuration files only *name* a registered modality and its backbones; nothing in a config
is ever imported or executed.

Examples:
    >>> import dataclasses
    >>> from diffaug_genomics.modalities.registry import get_modality
    >>> def factory():  # a tabular variant with its own encoder
    ...     base = get_modality("tabular")
    ...     return dataclasses.replace(base, name="my-tab", encoder_backbones=("linear",),
    ...                                build_encoder=my_build_encoder)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffaug_genomics.errors import ConfigError, InputError
from diffaug_genomics.modalities.base import Modality
from diffaug_genomics.modalities.detect import detect_modality
from diffaug_genomics.modalities.dna import DNA

if TYPE_CHECKING:
    from diffaug_genomics.config import Config

ENTRY_POINT_GROUP = "diffaug_genomics.backbones"
"""Entry-point group of third-party modalities (each a zero-argument factory of a Modality)."""

_REGISTRY: dict[str, Modality] = {"dna": DNA}
_BUILTIN_LAZY: dict[str, str] = {"image": "diffaug_genomics.modalities.image:IMAGE",
                                 "tabular": "diffaug_genomics.modalities.tabular:TABULAR"}


def register(modality: Modality) -> None:
    """Add (or replace) a modality in the registry."""
    if not isinstance(modality, Modality):
        raise TypeError(f"expected a Modality, got {type(modality).__name__}")
    _REGISTRY[modality.name] = modality


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_modalities() -> list[str]:
    """Names of every modality that :func:`get_modality` can return (plugins not yet loaded)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_LAZY) | set(_entry_points()))


def _from_factory(factory: Callable[[], Any], what: str) -> Modality:
    try:
        modality = factory()
    except Exception as exc:  # third-party code: report, do not crash with a traceback
        raise InputError(f"{what}: the factory failed ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(modality, Modality):
        raise InputError(f"{what}: the factory returned {type(modality).__name__}, not a "
                         "diffaug_genomics Modality")
    return modality


def get_modality(name: str) -> Modality:
    """Look a modality up by name: built-ins, registered ones, then entry points.

    An unknown name is an :class:`InputError` listing the known ones.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN_LAZY:
        module, attr = _BUILTIN_LAZY[name].split(":")
        register(getattr(importlib.import_module(module), attr))
        return _REGISTRY[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise InputError(f"unknown modality '{name}' (known: {', '.join(available_modalities())};"
                         f" plugins register under the entry-point group '{ENTRY_POINT_GROUP}' "
                         "or load with --backbone package.module:factory)")
    try:
        factory = ep.load()
    except Exception as exc:
        raise InputError(f"entry point '{name}' ({ep.value}): cannot load "
                         f"({exc.__class__.__name__}: {exc})") from None
    modality = _from_factory(factory, f"entry point '{name}' ({ep.value})")
    if modality.name != name:
        raise InputError(f"entry point '{name}' ({ep.value}) returned a modality named "
                         f"'{modality.name}'; the names must match")
    register(modality)
    return modality


def load_backbone(spec: str) -> Modality:
    """Import ``package.module:factory``, call the factory and register the modality it returns.

    This runs the user's code on the user's request (a command-line option); configuration
    files can only name modalities that are already registered.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"--backbone '{spec}': expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputError(f"--backbone '{spec}': cannot import {module_name} "
                         f"({exc.__class__.__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--backbone '{spec}': {module_name} has no callable '{attr}'")
    modality = _from_factory(factory, f"--backbone '{spec}'")
    register(modality)
    return modality


def validate_config(modality: Modality, cfg: Config) -> None:
    """Check that the configuration names backbones and a neighbour space the modality has.

    Raises :class:`ConfigError` naming the key and the values the modality offers.
    """
    checks = (("encoder.backbone", cfg.encoder.backbone, modality.encoder_backbones),
              ("generator.backbone", cfg.generator.backbone, modality.denoiser_backbones),
              ("knn.space", cfg.knn.space, (*modality.knn_spaces, "embedding")))
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not available for modality "
                              f"'{modality.name}' (choose from {', '.join(allowed)})")
    if cfg.bank.discrete and modality.to_discrete is None:
        raise ConfigError(f"config key 'bank.discrete': modality '{modality.name}' has continuous "
                          "data; set it to false")
    if modality.check_config is not None:
        modality.check_config(cfg)


def choose_modality(source: str | Path, modality: str | None, backbone: str | None
                    ) -> tuple[str | None, Callable[[str], str], Callable[[], str]]:
    """What ``fit`` passes to :func:`~diffaug_genomics.config.resolve_config`: the explicit
    modality (from ``--backbone package.module:factory``, which registers it, or
    ``--modality``), the registry's preset family of a name, and a deferred detector."""
    if backbone is not None:
        plugin = load_backbone(backbone)
        if modality is not None and modality != plugin.name:
            raise InputError(f"--modality {modality} conflicts with --backbone {backbone}, "
                             f"which provides modality '{plugin.name}'")
        modality = plugin.name
    elif modality is not None:
        get_modality(modality)
    return modality, lambda name: get_modality(name).presets, lambda: detect_modality(source)
