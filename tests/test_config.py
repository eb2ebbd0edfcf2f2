"""Configuration: presets, overrides, validation errors that name the key, YAML round trip."""

from __future__ import annotations

import pytest
import yaml

from diffaug_genomics.config import (
    PRESETS,
    Config,
    ConfigError,
    config_from_dict,
    dump_yaml,
    parse_override,
    resolve_config,
)


def test_presets_resolve_and_differ():
    hashes = {p: resolve_config(p).hash() for p in PRESETS}
    assert len(set(hashes.values())) == len(PRESETS)
    paper = resolve_config("paper")
    assert paper.generator.num_train_timesteps == 1000
    assert paper.generator.beta_schedule == "linear"
    assert paper.optim.batch_size == 500
    assert paper.bank.sampler == "ddpm"


def test_override_order_and_types():
    cfg = resolve_config("tiny", overrides=["encoder.width=256", "schedule.rounds=3",
                                            "loss.name=infonce", "knn.space=onehot-pca",
                                            "generator.channels=[8, 16, 32]"], seed=7)
    assert (cfg.encoder.width, cfg.schedule.rounds, cfg.loss.name) == (256, 3, "infonce")
    assert cfg.generator.channels == [8, 16, 32]
    assert cfg.seed == 7
    # ints are accepted where floats are expected
    assert resolve_config("tiny", overrides=["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize("override, key", [
    ("encoder.widht=3", "encoder.widht"),
    ("encoder.width=abc", "encoder.width"),
    ("encoder.width=true", "encoder.width"),
    ("loss.name=foo", "loss.name"),
    ("bank.fraction=2", "bank.fraction"),
    ("nonsense=1", "nonsense"),
    ("encoder=3", "encoder"),
    ("optim.batch_size=0", "optim.batch_size"),
])
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        resolve_config("tiny", overrides=[override])
    assert key in str(exc.value)
    assert exc.value.exit_code == 2


def test_config_file_is_data_not_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        resolve_config("tiny", config_file=bad)
    good = tmp_path / "good.yaml"
    good.write_text("encoder:\n  width: 48\n")
    assert resolve_config("tiny", config_file=good, overrides=["encoder.width=64"]).encoder.width == 64
    assert resolve_config("tiny", config_file=good).encoder.width == 48


def test_saved_config_round_trips():
    cfg = resolve_config("tiny", overrides=["schedule.rounds=2"], seed=3)
    text = dump_yaml({"versions": {"torch": "x"}, "world_size": 1, **cfg.to_dict()})
    again = config_from_dict(yaml.safe_load(text))
    assert again == cfg and again.hash() == cfg.hash()


def test_parse_override():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    assert parse_override("x=null") == {"x": None}
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_defaults_are_valid():
    cfg = Config()
    assert resolve_config(None) == cfg
