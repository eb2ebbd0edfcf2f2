"""Building and checking a run configuration: presets, YAML files, dotted ``--set`` overrides,
flags, and the validation of every value. The typed sections and their defaults are
:mod:`diffaug_genomics.config_schema` (re-exported here).

Resolution order (later wins): dataclass defaults < preset < ``--config`` YAML < ``--set
key=value`` overrides < explicit flags (``--seed``, ``--device``, ``--precision``,
``--compile``, ``--augment``, ``--modality``).
Presets come in families, one per modality (see :func:`preset_layers`): DNA's are
``resources/presets/NAME.yaml``; an image or tabular run applies ``resources/presets/FAMILY/
base.yaml`` (its backbones and neighbour space) and then ``resources/presets/FAMILY/NAME.yaml``.
The modality itself is, in order: the ``--modality`` flag, a ``modality`` key in ``--config`` or
``--set``, then what the caller detected from the input. Configs are data: YAML is parsed with ``yaml.safe_load`` and nothing in it is ever
imported or executed. An unknown key or a value of the wrong type is a :class:`ConfigError`
(exit code 2) naming the dotted key, raised before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from diffaug_genomics.config_keys import iter_keys, unknown_key_message
from diffaug_genomics.config_schema import (  # re-exported: the schema's names import from here
    AUGMENTS,
    EXECUTION_KEYS,
    LATER_KEYS,
    LATER_SECTIONS,
    PRESETS,
    RECORD_KEYS,
    BankConfig,
    Bound,
    Config,
    DataConfig,
    EncoderConfig,
    ExportConfig,
    GeneratorConfig,
    HandcraftedConfig,
    ImageConfig,
    KnnConfig,
    LossConfig,
    OptimConfig,
    ScheduleConfig,
    SymmetryConfig,
    TabularConfig,
)
from diffaug_genomics.errors import ConfigError

__all__ = ["AUGMENTS", "BOUNDS", "CHOICES", "EXECUTION_KEYS", "LATER_KEYS", "LATER_SECTIONS",
           "PAIRS", "PRESETS", "RECORD_KEYS", "BankConfig", "Bound", "Config", "ConfigError",
           "DataConfig", "EncoderConfig", "GeneratorConfig", "HandcraftedConfig", "ImageConfig",
           "KnnConfig", "LossConfig", "OptimConfig", "ScheduleConfig", "TabularConfig",
           "SymmetryConfig", "ExportConfig",
           "builtin_preset_family", "config_from_dict", "dump_yaml", "load_yaml", "numeric_keys",
           "parse_override", "preset_dict", "preset_layers", "resolve_config"]


CHOICES: dict[str, tuple[str, ...]] = {k.key: k.field.metadata["choices"] for k in iter_keys()
                                        if "choices" in k.field.metadata}
"""The valid values of every text key with a fixed list, from its field
(:func:`~diffaug_genomics.config_schema.choice`)."""
BOUNDS: dict[str, Bound] = {k.key: k.field.metadata["bound"] for k in iter_keys()
                            if "bound" in k.field.metadata}
"""The valid range of every numeric key (checked by :func:`_validate` before any work), from its
field (:func:`~diffaug_genomics.config_schema.bounded`). A numeric key added to the dataclasses
must be given its bound there: the test suite checks that :func:`numeric_keys` and this table
agree, and tries each bound."""
PAIRS = tuple(k.key for k in iter_keys() if k.field.metadata.get("pair"))
"""List keys holding a ``[lo, hi]`` pair (two items, lo <= hi, each within the key's bound)."""


def numeric_keys(cls: type | None = None) -> list[str]:
    """Every dotted key of :class:`Config` holding a number or a list of numbers."""
    cls = Config if cls is None else cls
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += [f"{f.name}.{k}" for k in numeric_keys(hint)]
            continue
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if typing.get_origin(hint) is list:
            (hint,) = typing.get_args(hint)
        if hint in (int, float):
            out.append(f.name)
    return out


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Coerce/validate ``value`` against a field annotation; raise ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}': unsupported type")  # pragma: no cover


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested dict of updates onto a dataclass instance, validating every key."""
    if not isinstance(updates, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in RECORD_KEYS:
            continue
        if key not in names:
            raise ConfigError(unknown_key_message(dotted))
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{dotted}.")
        else:
            setattr(obj, key, _check_type(dotted, value, hints[key]))


def _validate(cfg: Config) -> None:
    flat = flatten(cfg.to_dict())
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key '{key}': {flat[key]!r} is not one of {', '.join(allowed)}")
    for key in numeric_keys():
        bound, value = BOUNDS.get(key), flat[key]
        if bound is None or value is None:
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ConfigError(f"config key '{key}': must not be an empty list")
        if key in PAIRS and (len(items) != 2 or items[0] > items[1]):
            raise ConfigError(f"config key '{key}': expected [lo, hi] with lo <= hi, got {value}")
        for item in items:
            if not bound.contains(item):
                raise ConfigError(f"config key '{key}': must be {bound.describe()}, got {value}")
    if cfg.knn.alpha_min > cfg.knn.alpha_max:
        raise ConfigError("config key 'knn.alpha_min': must not exceed knn.alpha_max")
    if cfg.bank.both_views and cfg.bank.per_sequence < 2:
        raise ConfigError("config key 'bank.both_views': needs bank.per_sequence >= 2 (two "
                          "different generated views of each sample)")
    if cfg.bank.steps > cfg.generator.num_train_timesteps:
        raise ConfigError("config key 'bank.steps': must not exceed generator.num_train_timesteps")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested sections as dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``'encoder.width=256'`` -> ``{'encoder': {'width': 256}}`` (value parsed as YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely (never executes code); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a YAML mapping")
    return data


def _preset_file(*parts: str) -> Any:
    return resources.files("diffaug_genomics.resources").joinpath("presets", *parts)


def preset_dict(name: str) -> dict[str, Any]:
    """The overrides a named DNA preset applies to the defaults."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return yaml.safe_load(_preset_file(f"{name}.yaml").read_text()) or {}


def builtin_preset_family(modality: str) -> str:
    """The preset family of a modality without asking the registry: its own folder under
    ``resources/presets`` when there is one (``image``, ``tabular``), else ``dna``."""
    return modality if _preset_file(modality, "base.yaml").is_file() else "dna"


def preset_layers(name: str | None, family: str = "dna") -> list[tuple[str, dict[str, Any]]]:
    """The (origin, overrides) layers of preset ``name`` in a preset family.

    ``dna``: ``presets/NAME.yaml``. Other families: ``presets/FAMILY/base.yaml`` (always, even
    without a preset: the family's backbones and neighbour space), then
    ``presets/FAMILY/NAME.yaml``.
    """
    if family == "dna":
        return [(f"preset {name}", preset_dict(name))] if name else []
    base = _preset_file(family, "base.yaml")
    if not base.is_file():
        raise ConfigError(f"no presets for the preset family '{family}'")
    layers = [(f"presets/{family}/base.yaml", yaml.safe_load(base.read_text()) or {})]
    if name:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
        layers.append((f"preset {family}/{name}",
                       yaml.safe_load(_preset_file(family, f"{name}.yaml").read_text()) or {}))
    return layers


def resolve_config(preset: str | None = "default", config_file: str | Path | None = None,
                   overrides: list[str] | None = None, *,
                   default_modality: str | Callable[[], str] | None = None,
                   preset_family: Callable[[str], str] | None = None, **flags: Any) -> Config:
    """Build and validate a :class:`Config` (see module docstring for the order).

    Args:
        default_modality: the modality when neither the ``modality`` flag nor a config layer
            names one (a callable is called only then, e.g. to detect it from the input);
            None means ``Config().modality`` (dna).
        preset_family: modality name -> preset family (default
            :func:`builtin_preset_family`; ``fit`` asks the registry, so plugins can name one).
        flags: explicit values (``seed``, ``device``, ``augment``, ``modality``); None = unset.
    """
    cfg = Config()
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file:
        layers.append((str(config_file), load_yaml(config_file)))
    for text in overrides or []:
        layers.append((f"--set {text}", parse_override(text)))
    modality = flags.get("modality")
    if modality is None:
        named = [layer["modality"] for _, layer in layers if "modality" in layer]
        if named:
            modality = named[-1]
        elif default_modality is not None:
            modality = default_modality() if callable(default_modality) else default_modality
        else:
            modality = cfg.modality
    if not isinstance(modality, str):
        raise ConfigError(f"config key 'modality': expected a string, got {modality!r}")
    family = (preset_family or builtin_preset_family)(modality)
    for _, layer in [*preset_layers(preset, family), *layers]:
        _merge(cfg, layer)
    _merge(cfg, {**{k: v for k, v in flags.items() if v is not None}, "modality": modality})
    _validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from a saved ``config.yaml`` mapping (record keys ignored).

    A run saved before ``precision`` existed was computed in float32: it stays ``fp32`` (so
    it resumes, embeds and generates as it did)."""
    cfg = Config()
    if "precision" not in data:
        data = {**data, "precision": "fp32"}
    _merge(cfg, data)
    _validate(cfg)
    return cfg


def dump_yaml(data: dict[str, Any]) -> str:
    """Stable YAML text of a nested dict."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
