"""The k-mer-spectrum encoder: its counting, its scaling and PCA start, and a run through fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from diffaug_genomics.alphabet import one_hot
from diffaug_genomics.config import resolve_config
from diffaug_genomics.kmers import kmer_counts, kmer_frequencies
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.models.spectrum import SpectrumEncoder


def _model(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows).permute(0, 2, 1).float()


def test_tensor_frequencies_equal_the_numpy_counter_on_real_sequences(example_rows):
    for k in (1, 3, 5):
        want = kmer_counts(example_rows, k, normalize=True)
        got = kmer_frequencies(_model(example_rows), k).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_frequencies_skip_n_and_read_continuous_input_at_its_argmax():
    x = _model(one_hot("ACGNTA")[None])
    got = kmer_frequencies(x, 2)[0]
    # AC and CG only: every window touching the N is skipped, then TA
    names = {0 * 4 + 1: "AC", 1 * 4 + 2: "CG", 3 * 4 + 0: "TA"}
    assert torch.allclose(got[list(names)], torch.full((3,), 1 / 3))
    assert got.sum().item() == pytest.approx(1.0)
    soft = 0.1 + 0.6 * x  # continuous, same argmax, every position "called"
    soft[:, :, 3] = torch.tensor([0.1, 0.1, 0.5, 0.2])  # the N becomes a G
    assert kmer_frequencies(soft, 2)[0, 2 * 4 + 3].item() == pytest.approx(1 / 5)  # GT
    assert kmer_frequencies(torch.zeros(2, 4, 1), 3).abs().sum().item() == 0.0  # L < k


def test_fit_init_scales_each_block_and_the_untrained_encoder_is_pca(example_rows):
    """Real DHS rows have no position frame: the start is PCA of the scaled spectrum alone."""
    x = _model(example_rows)
    enc = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=2, embed_dim=8,
                          position_weight=0.5)
    enc.fit_init(x)
    assert enc.start_record["profile_dims"] == 0
    f = (enc.features(x) - enc.mean) * enc.scale
    assert f.mean(dim=0).abs().max().item() < 1e-5
    n_kmer = 4**3
    spectrum_var = f[:, :n_kmer].pow(2).sum(dim=1).mean().item()
    profile_var = f[:, n_kmer:].pow(2).sum(dim=1).mean().item()
    assert spectrum_var == pytest.approx(1.0, rel=1e-4)
    assert profile_var == pytest.approx(0.25, rel=1e-4)
    with torch.no_grad():
        z = enc(x).double().numpy()
    want = PCA(8).fit_transform(f[:, :n_kmer].double().numpy())
    for j in range(8):  # each coordinate is one principal component, up to its sign
        assert abs(np.corrcoef(z[:, j], want[:, j])[0, 1]) > 0.999
    both = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=2, embed_dim=8,
                           position_weight=0.5, position_dims=3)
    both.fit_init(x)
    with torch.no_grad():
        z = both(x).double().numpy()
    profile = PCA(3, svd_solver="full").fit_transform(f[:, n_kmer:].double().numpy())
    for j in range(3):  # the last rows: the profile's own principal components
        assert abs(np.corrcoef(z[:, 5 + j], profile[:, j])[0, 1]) > 0.999


def test_without_pca_init_only_the_statistics_are_set(example_rows):
    x = _model(example_rows)
    torch.manual_seed(0)
    enc = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=8,
                          pca_init=False)
    before = enc.proj.weight.clone()
    enc.fit_init(x)
    assert torch.equal(enc.proj.weight, before)
    assert not torch.equal(enc.scale, torch.ones_like(enc.scale))


def test_any_length_works_the_profile_reads_the_centre(example_rows):
    x = _model(example_rows[:8])
    enc = SpectrumEncoder(length=200, kmer_k=3, width=8, n_blocks=1, embed_dim=4)
    longer = torch.nn.functional.pad(x, (10, 10))  # an insertion-style augmentation: 220 bp
    f, f_long = enc.features(x), enc.features(longer)
    assert torch.equal(f[:, 64:], f_long[:, 64:])  # the same central 200 positions
    assert torch.allclose(f[:, :64], f_long[:, :64])  # padding starts no k-mer
    shorter = enc.features(x[:, :, 5:195])  # 190 bp: 5 zero positions each side
    assert torch.equal(shorter[:, 64:].view(8, 4, 200)[:, :, 5:195], x[:, :, 5:195])
    assert shorter[:, 64:].view(8, 4, 200)[:, :, :5].abs().sum().item() == 0.0
    with pytest.raises(ValueError, match=r"expected \(N, 4, L\)"):
        enc(torch.zeros(2, 5, 200))


def test_the_registry_builds_it_and_a_trained_run_keeps_its_statistics(example_rows, tmp_path):
    from diffaug_genomics.train.loop import Trainer

    cfg = resolve_config("tiny", overrides=["encoder.backbone=spectrum", "encoder.kmer_k=3",
                               "encoder.embed_dim=8", "encoder.width=16", "schedule.rounds=0",
                               "schedule.warmup_epochs=1", "augment=knn-mixup", "knn.k=4",
                               "knn.kmer_k=3"])
    modality = get_modality("dna")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "cache").mkdir()
    trainer = Trainer(cfg, modality, example_rows, tmp_path / "run", torch.device("cpu"))
    assert isinstance(trainer.models.encoder, SpectrumEncoder)
    fitted_mean = trainer.models.encoder.mean.clone()
    assert fitted_mean.abs().sum().item() > 0  # fit_init ran on the training rows
    trainer.run()
    state = torch.load(trainer.setup.paths.encoder, weights_only=True)["encoder"]
    assert torch.equal(state["mean"], fitted_mean)  # statistics are buffers, saved, not trained
    fresh = modality.build_encoder(cfg, (4, 200))
    fresh.load_state_dict(state)
    fresh.eval()
    with torch.no_grad():
        z = fresh(_model(example_rows[:16]))
    assert torch.isfinite(z).all() and z.shape == (16, 8)


def test_rc_option_makes_the_embedding_strand_invariant(example_rows):
    from diffaug_genomics.alphabet import reverse_complement_tensor

    x = _model(example_rows[:32])
    enc = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=8, rc=True)
    enc.fit_init(x)
    torch.nn.init.normal_(enc.mlp[-1].weight)  # a non-zero MLP too
    with torch.no_grad():
        assert torch.allclose(enc(x), enc(reverse_complement_tensor(x)), atol=1e-5)
        plain = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=8)
        plain.load_state_dict(enc.state_dict())
        assert not torch.allclose(plain(x), plain(reverse_complement_tensor(x)), atol=1e-3)


def test_default_and_paper_presets_use_it_and_tiny_keeps_the_conv_encoder():
    from diffaug_genomics.modalities.registry import validate_config

    for preset, weight in (("default", 0.7), ("paper", 0.0)):
        cfg = resolve_config(preset)
        validate_config(get_modality("dna"), cfg)
        assert (cfg.encoder.backbone, cfg.encoder.position_weight) == ("spectrum", weight)
        enc = get_modality("dna").build_encoder(cfg, (4, 200))
        assert isinstance(enc, SpectrumEncoder) and enc.embed_dim == cfg.encoder.embed_dim
    assert resolve_config("tiny").encoder.backbone == "conv1d"


def test_command_line_fit_embed_generate_with_the_spectrum_encoder(example_fasta, tmp_path):
    """Through the real CLI: the exported embedding is the trained encoder's on the rows."""
    import os
    import subprocess
    import sys

    import h5py
    from conftest import MICRO, read_example_rows

    cli = [sys.executable, "-m", "diffaug_genomics_cli.main"]
    env = {**os.environ, "DIFFAUG_NO_BAR": "1"}
    sets = [a for o in MICRO + ["encoder.backbone=spectrum", "encoder.kmer_k=4"]
            for a in ("--set", o)]
    run = tmp_path / "run"
    for args in (["fit", example_fasta, "-o", run, "--preset", "tiny", "--seed", "0", *sets],
                 ["embed", run, example_fasta, "-o", tmp_path / "emb.h5"],
                 ["generate", run, example_fasta, "-o", tmp_path / "pos.fa"]):
        proc = subprocess.run([*cli, *map(str, args)], capture_output=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr.decode()
    ckpt = torch.load(run / "encoder.pt", weights_only=True)
    cfg = resolve_config("tiny", overrides=MICRO + ["encoder.backbone=spectrum",
                                                    "encoder.kmer_k=4"])
    enc = get_modality("dna").build_encoder(cfg, (4, 200))
    enc.load_state_dict(ckpt["encoder"])
    enc.eval()
    with torch.no_grad():
        want = enc(_model(read_example_rows(example_fasta))).numpy()
    with h5py.File(tmp_path / "emb.h5") as f:
        got = f["embeddings"][()]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "pos.fa").read_text().count(">") == 500
