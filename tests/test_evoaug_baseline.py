"""The benchmark's second hand-designed baseline: EvoAug 1.0.6's own augmentations."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import MICRO, REPO

pytest.importorskip("evoaug")
sys.path.insert(0, str(REPO / "benchmarks"))
from evoaug_baseline import NAME, EvoAugDNA  # noqa: E402


def test_views_follow_robustmodel_and_are_reproducible(example_rows):
    x = torch.from_numpy(example_rows[:64]).permute(0, 2, 1).float()  # (64, 4, 200)
    before = torch.get_rng_state()
    a = EvoAugDNA()(x, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    assert torch.equal(a, EvoAugDNA()(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, EvoAugDNA()(x, torch.Generator().manual_seed(4)))
    assert a.shape == (64, 4, 220)  # L + insert_max, as RobustModel pads
    # Two of six augmentations per sequence: most views differ from the source base by base
    # (noise alone, or a reverse complement not drawn, can leave one as it was), and Gaussian
    # noise (one of the six) leaves some views off the one-hot simplex while others stay exact.
    same = (a[:, :, :200].argmax(1) == x.argmax(1)).float().mean(1)
    assert int((same < 0.99).sum()) > 32
    one_hot = (a == 0).logical_or(a == 1).all(dim=(1, 2))
    assert 0 < int(one_hot.sum()) < 64


def test_fit_and_embed_with_the_evoaug_modality(example_fasta, tmp_path):
    from diffaug_genomics.embed import embed
    from diffaug_genomics.fit import fit
    from diffaug_genomics.io.h5 import read_embeddings

    fit(example_fasta, tmp_path / "run", preset="tiny", augment="handcrafted", seed=0,
        backbone="evoaug_baseline:dna_evoaug", overrides=MICRO)
    embed(tmp_path / "run", example_fasta, tmp_path / "emb.h5")
    emb, ids, _, _ = read_embeddings(tmp_path / "emb.h5")
    assert emb.shape == (500, 16) and np.isfinite(emb).all()
    assert f"modality: {NAME}" in (tmp_path / "run" / "config.yaml").read_text()
