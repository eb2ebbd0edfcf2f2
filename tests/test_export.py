"""The exported encoder state (start or a stage's end, by a label-free criterion), the
criteria themselves, PCA starts, and that no label reaches ``fit``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import MICRO

from diffaug_genomics.config import load_yaml
from diffaug_genomics.diagnostics import neighbour_agreement, uniformity
from diffaug_genomics.fit import fit
from diffaug_genomics.train.export import ExportChoice


def test_the_criteria_measure_what_they_say():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    assert neighbour_agreement(x, x) == 1.0
    assert neighbour_agreement(x, x @ rng.normal(size=(8, 8))) > 0.3  # same information
    assert neighbour_agreement(rng.normal(size=(200, 8)), x) < 0.15  # chance 10/199
    spread = uniformity(x)
    clumped = uniformity(x * 0.01 + np.array([1.0] + [0.0] * 7))  # all near one direction
    assert 0 <= clumped < 0.1 < spread <= 4.0


def test_best_keeps_the_earliest_highest_state_final_the_last():
    best, final = ExportChoice("best", "eff_rank"), ExportChoice("final", "eff_rank")
    for choice in (best, final):
        for state, value in (("start", 5.0), ("warmup", 7.0), ("round 1", 7.0),
                             ("round 2", 6.0)):
            choice.offer(state, {"eff_rank": value, "uniformity": 1.0},
                         {"w": torch.tensor([value])}, {})
    assert best.chosen["state"] == "warmup" and best.chosen["encoder"]["w"].item() == 7.0
    assert final.chosen["state"] == "round 2"
    record = best.record()
    assert record["improved_on_start"] is True and record["start_value"] == 5.0
    assert [c["state"] for c in record["candidates"]] == ["start", "warmup", "round 1",
                                                          "round 2"]
    again = ExportChoice("best", "eff_rank")
    again.load_state_dict(best.state_dict())
    assert again.record() == record


def _fit(source, run, *extra: str, augment: str = "diffaug", **kw) -> dict:
    fit(source, run, preset="tiny", seed=0, augment=augment,
        overrides=MICRO + ["encoder.backbone=spectrum", "encoder.kmer_k=3", *extra], **kw)
    return load_yaml(run / "config.yaml")


def test_fit_exports_the_best_scored_state_and_records_every_candidate(example_fasta, tmp_path):
    record = _fit(example_fasta, tmp_path / "best")
    exported = record["exported"]
    states = [c["state"] for c in exported["candidates"]]
    assert states == ["start", "warmup", "round 1", "round 2"]
    assert exported["criterion"] == "feature_agreement"  # the default, chosen by measurement
    values = {c["state"]: c["feature_agreement"] for c in exported["candidates"]}
    assert exported["state"] == max(states, key=lambda s: (values[s], -states.index(s)))
    assert exported["start_value"] == values["start"]
    assert exported["improved_on_start"] == (exported["state"] != "start")
    saved = torch.load(tmp_path / "best" / "encoder.pt", weights_only=True)
    assert saved["exported"]["state"] == exported["state"]
    name = {"start": "start.pt", "warmup": "warmup.pt", "round 1": "round1.pt",
            "round 2": "round2.pt"}[exported["state"]]
    state = torch.load(tmp_path / "best" / "checkpoints" / name, weights_only=True)
    for key, value in state["encoder"].items():  # the chosen state's weights, exactly
        assert torch.equal(saved["encoder"][key], value), key
    # the discovery is recorded beside it: the example is real DHS, strand-symmetric, and the
    # start (no position frame in DHS: every direction reads the spectrum)
    assert record["discovered_symmetry"]["accepted"] == ["reversed, ACGT->TGCA"]
    assert record["start"]["profile_dims"] == 0 and "no position frame" in record["start"]["reason"]
    pytest.importorskip("matplotlib")
    from diffaug_genomics.report.build import build_report

    build_report(tmp_path / "best", tmp_path / "report.html", max_points=200)
    html = (tmp_path / "report.html").read_text()
    assert "symmetry: the 500 training rows are unchanged by &#x27;reversed, ACGT-&gt;TGCA" in html
    assert f"exported state: {exported['state']} (best; feature_agreement" in html
    assert "Encoder states scored for export" in html


def test_export_final_exports_the_last_state(example_fasta, tmp_path):
    record = _fit(example_fasta, tmp_path / "final", "export.choose=final")
    assert record["exported"]["state"] == "round 2"
    saved = torch.load(tmp_path / "final" / "encoder.pt", weights_only=True)["encoder"]
    last = torch.load(tmp_path / "final" / "checkpoints" / "round2.pt", weights_only=True)
    for key, value in last["encoder"].items():
        assert torch.equal(saved[key], value), key


def test_no_label_reaches_fit(example_fasta, example_labels, tmp_path):
    """The same sequences with their labels, with shuffled labels and with none: the same
    exported encoder, bit for bit (labels are only ever read by evaluate)."""
    from diffaug_genomics.encode import encode_fasta

    lines = example_labels.read_text().splitlines()
    rng = np.random.default_rng(0)
    shuffled = tmp_path / "shuffled.tsv"
    labels = [line.split("\t")[1] for line in lines[1:]]
    shuffled.write_text("\n".join([lines[0]] + [
        f"{line.split(chr(9))[0]}\t{lab}" for line, lab in zip(lines[1:],
                                                               rng.permutation(labels),
                                                               strict=True)]) + "\n")
    weights = []
    for name, tsv in (("true", example_labels), ("shuffled", shuffled), ("none", None)):
        h5 = tmp_path / f"{name}.h5"
        encode_fasta(example_fasta, h5, labels=tsv, policy="center", show_progress=False)
        with h5py.File(h5) as f:
            assert ("labels" in f) == (tsv is not None)
        _fit(h5, tmp_path / name, "schedule.rounds=1", augment="knn-mixup")
        weights.append(torch.load(tmp_path / name / "encoder.pt", weights_only=True)["encoder"])
    for other in weights[1:]:
        for key, value in weights[0].items():
            assert torch.equal(other[key], value), key


def test_the_tabular_mlp_starts_at_the_pca_of_its_input():
    from sklearn.decomposition import PCA

    from diffaug_genomics.models.mlp import MLPEncoder

    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.normal(size=(300, 20)) @ rng.normal(size=(20, 20))).astype(
        np.float32))
    enc = MLPEncoder(20, width=32, n_blocks=2, embed_dim=5, pca_init=True)
    enc.fit_init(x)
    enc.eval()
    with torch.no_grad():
        z = enc(x).double().numpy()
    want = PCA(5).fit_transform(x.double().numpy())
    for j in range(5):
        assert abs(np.corrcoef(z[:, j], want[:, j])[0, 1]) > 0.9999
    plain = MLPEncoder(20, width=32, n_blocks=2, embed_dim=5)
    old_state = plain.state_dict()  # a run saved before the linear path existed
    loaded = MLPEncoder(20, width=32, n_blocks=2, embed_dim=5, pca_init=True)
    loaded.load_state_dict(old_state)
    loaded.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


def test_canonical_kmer_reference_is_strand_symmetric(example_rows):
    from diffaug_genomics.alphabet import reverse_complement
    from diffaug_genomics.evaluate_inputs import parse_features
    from diffaug_genomics.kmers import baseline_features

    a = baseline_features(example_rows[:16], "ckmer", 4)
    b = baseline_features(reverse_complement(example_rows[:16]), "ckmer", 4)
    np.testing.assert_allclose(a, b, atol=1e-7)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    plain = baseline_features(example_rows[:16], "kmer", 4)
    assert not np.allclose(a, plain)
    assert parse_features("ckmer:5") == ("ckmer", 5)
    with pytest.raises(Exception, match="ckmer:K"):
        parse_features("ckmer:9")


def test_command_line_export_flag_log_and_canonical_reference(capsys, example_fasta,
                                                              example_labels, tmp_path):
    import json

    from test_cli_modalities import cli

    run = tmp_path / "run"
    sets = [a for o in MICRO + ["schedule.rounds=1"] for a in ("--set", o)]
    code, _, err = cli(capsys, "fit", example_fasta, "-o", run, "--preset", "tiny",
                       "--augment", "knn-mixup", "--export", "final", *sets)
    assert code == 0, err
    assert "symmetry (auto, 500 rows): accepted 'reversed, ACGT->TGCA'" in err
    assert "exported: trained (final; feature_agreement" in err
    assert load_yaml(run / "config.yaml")["exported"]["state"] == "trained"
    code, _, err = cli(capsys, "fit", example_fasta, "-o", tmp_path / "bad", "--export", "last")
    assert code == 2 and "export.choose" in err and "best, final" in err
    code, out, err = cli(capsys, "evaluate", example_fasta, "--labels", example_labels,
                         "--features", "ckmer:3", "--protocol", "linear", "--folds", "2",
                         "-o", "-")
    assert code == 0, err
    assert json.loads(out)["inputs"]["embeddings_attrs"]["features"] == "ckmer:3"


def test_randomised_principal_directions_find_the_top_subspace():
    """Above EXACT_MAX_FEATURES columns the PCA start is a seeded randomised SVD: the same on
    every call, and it keeps (almost) all the variance the exact top directions keep."""
    from diffaug_genomics.models.pca import EXACT_MAX_FEATURES, principal_directions

    gen = torch.Generator().manual_seed(0)
    f = EXACT_MAX_FEATURES + 200
    scales = torch.logspace(0, -2, f)
    x = torch.randn(1500, f, generator=gen) * scales
    x = x - x.mean(dim=0)
    a, b = principal_directions(x, 32), principal_directions(x, 32)
    assert torch.equal(a, b) and a.shape == (32, f)
    exact = torch.linalg.svdvals(x.double())[:32].pow(2).sum()
    kept = (x.double() @ a.T).pow(2).sum()
    assert kept / exact > 0.99
    assert torch.allclose(a @ a.T, torch.eye(32, dtype=torch.float64), atol=1e-6)
