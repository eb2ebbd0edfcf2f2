"""The modality registry: built-ins, entry-point plugins, --backbone factories, config checks."""

from __future__ import annotations

import sys
import textwrap

import pytest

from diffaug_genomics.config import ConfigError, resolve_config
from diffaug_genomics.errors import InputError
from diffaug_genomics.modalities import registry
from diffaug_genomics.modalities.base import Modality
from diffaug_genomics.modalities.registry import (
    ENTRY_POINT_GROUP,
    available_modalities,
    get_modality,
    load_backbone,
    validate_config,
)
from diffaug_genomics.modalities.sequences import SEQUENCE_IO

PLUGIN = textwrap.dedent('''
    """A third-party modality: the tabular one with a linear encoder."""
    import dataclasses

    from torch import nn

    from diffaug_genomics.modalities.registry import get_modality


    class LinearEncoder(nn.Module):
        def __init__(self, d, k):
            super().__init__()
            self.embed_dim = k
            self.fc = nn.Linear(d, k)

        def forward(self, x):
            return self.fc(x)


    def build(cfg, sample_shape):
        return LinearEncoder(sample_shape[0], cfg.encoder.embed_dim)


    def make():
        return dataclasses.replace(get_modality("tabular"), name="{name}",
                                   encoder_backbones=("mlp", "linear"), build_encoder=build)


    def broken():
        return "not a modality"
''')


def install_plugin(root, name: str = "toytab", dist: str = "toyplugin") -> None:
    """A package ``{dist}_mod`` and an installed distribution (dist-info with entry points)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{dist}_mod.py").write_text(PLUGIN.replace("{name}", name))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{name} = {dist}_mod:make\nbadname = {dist}_mod:make\n"
        f"broken = {dist}_mod:broken\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(registry._REGISTRY)
    yield tmp_path
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    sys.modules.pop("toyplugin_mod", None)


def test_builtins_are_registered_and_declare_their_backbones():
    assert {"dna", "image", "tabular"} <= set(available_modalities())
    for name, enc, den in (("dna", "conv1d", "unet1d"), ("image", "resnet", "unet2d"),
                           ("tabular", "mlp", "resmlp")):
        m = get_modality(name)
        assert isinstance(m, Modality) and m.name == name
        assert enc in m.encoder_backbones and den in m.denoiser_backbones
    assert get_modality("dna").io is SEQUENCE_IO and get_modality("tabular").io is not None


def test_unknown_modality_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown modality 'nope'.*image.*tabular"):
        get_modality("nope")


def test_entry_point_plugin_is_found_by_name(plugin_path):
    assert "toytab" in available_modalities()  # listed without being imported
    m = get_modality("toytab")
    assert m.name == "toytab" and "linear" in m.encoder_backbones
    cfg = resolve_config("tiny", overrides=["encoder.backbone=linear"], modality="toytab",
                         preset_family=lambda n: get_modality(n).presets)
    assert cfg.modality == "toytab" and cfg.knn.space == "pca"  # tabular presets apply
    validate_config(m, cfg)
    enc = m.build_encoder(cfg, (13,))
    assert type(enc).__name__ == "LinearEncoder"


@pytest.mark.parametrize("name, needle", [("badname", "names must match"),
                                          ("broken", "not a diffaug_genomics Modality")])
def test_bad_entry_points_are_input_errors(plugin_path, name, needle):
    with pytest.raises(InputError, match=needle):
        get_modality(name)


def test_backbone_factory_spec(plugin_path):
    assert load_backbone("toyplugin_mod:make").name == "toytab"
    for spec, needle in (("toyplugin_mod", "package.module:factory"),
                         ("no_such_module_xyz:make", "cannot import"),
                         ("toyplugin_mod:missing", "no callable 'missing'"),
                         ("toyplugin_mod:broken", "not a diffaug_genomics Modality")):
        with pytest.raises(InputError, match=needle):
            load_backbone(spec)


@pytest.mark.parametrize("modality, override, key", [
    ("image", "encoder.backbone=conv1d", "encoder.backbone"),
    ("tabular", "generator.backbone=unet2d", "generator.backbone"),
    ("tabular", "knn.space=kmer", "knn.space"),
    ("dna", "knn.space=pca", "knn.space"),
    ("image", "encoder.rc=true", "encoder.rc"),
])
def test_config_must_name_what_the_modality_provides(modality, override, key):
    cfg = resolve_config("tiny", overrides=[override], modality=modality)
    with pytest.raises(ConfigError, match=key) as exc:
        validate_config(get_modality(modality), cfg)
    assert exc.value.exit_code == 2


def test_preset_families():
    dna = resolve_config("tiny")
    image = resolve_config("tiny", modality="image")
    table = resolve_config("default", default_modality=lambda: "tabular")
    assert (dna.encoder.backbone, image.encoder.backbone, table.encoder.backbone) == \
        ("conv1d", "resnet", "mlp")
    assert table.modality == "tabular" and table.encoder.width == 500  # the paper's MLP
    # a config layer naming the modality wins over detection; the flag wins over both
    assert resolve_config("tiny", overrides=["modality=image"],
                          default_modality=lambda: "tabular").modality == "image"
    assert resolve_config("tiny", overrides=["modality=image"], modality="tabular",
                          default_modality=lambda: "dna").modality == "tabular"
    for modality in ("image", "tabular"):
        for preset in ("tiny", "default", "paper"):
            validate_config(get_modality(modality), resolve_config(preset, modality=modality))


def test_new_config_sections_keep_old_hashes():
    """image / tabular sections and keys added to 0.1.0 sections (bank.discrete,
    bank.per_sequence, bank.both_views) enter the hash only when changed, so 0.1.0 DNA runs
    resume."""
    from diffaug_genomics.config import EXECUTION_KEYS, LATER_KEYS, LATER_SECTIONS, Config

    base = resolve_config("tiny")
    data = base.to_dict()
    assert {"image", "tabular", "symmetry", "export"} <= set(LATER_SECTIONS)
    for name in LATER_SECTIONS:  # sections added after 0.1.0, at their defaults
        del data[name]
    for name in EXECUTION_KEYS:  # how a run computes (precision, ...): never in the hash
        del data[name]
    assert {"bank.discrete", "encoder.kmer_k", "encoder.pca_init"} <= set(LATER_KEYS)
    for key in LATER_KEYS:  # added to a 0.1.0 section
        section, name = key.split(".")
        del data[section][name]
    import hashlib
    import json

    assert base.hash() == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert resolve_config("tiny", overrides=["image.flip_prob=0"]).hash() != base.hash()
    assert Config().hash() == resolve_config(None).hash()
    assert resolve_config("tiny", overrides=["bank.discrete=true"]).hash() != base.hash()
    for key in ("encoder.recalibrate_bn", "generator.ema_warmup"):
        assert resolve_config("tiny", overrides=[f"{key}=false"]).hash() != base.hash()
    assert resolve_config("tiny", overrides=["bank.per_sequence=2"]).hash() != base.hash()
    for change in ("symmetry.mode=none", "export.choose=final"):
        assert resolve_config("tiny", overrides=[change]).hash() != base.hash()


def test_discrete_bank_needs_discrete_data():
    from diffaug_genomics.errors import ConfigError

    validate_config(get_modality("dna"), resolve_config("tiny", overrides=["bank.discrete=true"]))
    cfg = resolve_config("tiny", modality="tabular", overrides=["bank.discrete=true"])
    with pytest.raises(ConfigError, match="'bank.discrete'"):
        validate_config(get_modality("tabular"), cfg)
