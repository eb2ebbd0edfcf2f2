"""Image and tabular backbones and baselines: shapes, conditioning, determinism, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug_genomics.config import resolve_config
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.io.samples import Samples
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.models.mlp import MLPEncoder, ResMLPDenoiser
from diffaug_genomics.models.resnet import ResNetEncoder
from diffaug_genomics.models.unet2d import UNet2D
from diffaug_genomics.positives.image_views import SimCLRViews
from diffaug_genomics.positives.scarf import ScarfCorruption


@pytest.mark.parametrize("c, h, w", [(1, 8, 8), (3, 7, 5), (3, 32, 32)])
def test_resnet_shapes(c, h, w):
    enc = ResNetEncoder(in_channels=c, width=8, n_blocks=1, embed_dim=12, image_size=(h, w))
    assert enc(torch.randn(4, c, h, w)).shape == (4, 12)
    with pytest.raises(ValueError, match="expected"):
        enc(torch.randn(4, c + 1, h, w))


@pytest.mark.parametrize("c, h, w, channels", [(1, 8, 8, (8, 16)), (3, 7, 5, (8, 16, 16))])
def test_unet2d_shapes_and_condition(c, h, w, channels):
    torch.manual_seed(0)
    net = UNet2D(in_channels=c, channels=channels, cond_dim=6, time_dim=16)
    x, t, z = torch.randn(3, c, h, w), torch.tensor([0, 10, 999]), torch.randn(3, 6)
    out = net(x, t, z)
    assert out.shape == x.shape
    null = net(x, t, None)
    drop = net(x, t, z, drop_cond=torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(null, drop)
    assert not torch.allclose(out, null)  # the condition matters
    out.sum().backward()
    assert net.conditioning.cond_mlp[0].weight.grad.abs().sum() > 0


def test_mlp_backbones():
    enc = MLPEncoder(10, width=16, n_blocks=3, embed_dim=5)
    assert enc(torch.randn(4, 10)).shape == (4, 5)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in enc.modules()) == 3
    net = ResMLPDenoiser(10, widths=(16, 32), cond_dim=5, time_dim=8)
    x, t, z = torch.randn(4, 10), torch.arange(4), torch.randn(4, 5)
    out = net(x, t, z)
    assert out.shape == (4, 10)
    torch.testing.assert_close(net(x, t, None), net(x, t, z, drop_cond=torch.ones(4).bool()))
    diffusion = Diffusion(50)
    loss = diffusion.loss(net, x, z, p_uncond=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    sample = diffusion.sample(net, z, x.shape, steps=3, strength=0.5, x_init=x, clip_x0=False,
                              generator=torch.Generator().manual_seed(0))
    assert sample.shape == x.shape and torch.isfinite(sample).all()


def test_simclr_views_are_seeded_and_in_range():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    aug = SimCLRViews()
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    c = aug(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a, x)
    gray = SimCLRViews()(torch.rand(4, 1, 8, 8) * 2 - 1, torch.Generator().manual_seed(0))
    assert gray.shape == (4, 1, 8, 8)
    identity = SimCLRViews(crop_scale=(1, 1), crop_ratio=(1, 1), flip_prob=0, jitter_prob=0,
                           grayscale_prob=0, blur_prob=0)
    torch.testing.assert_close(identity(x, torch.Generator().manual_seed(0)), x)
    flip = SimCLRViews(crop_scale=(1, 1), crop_ratio=(1, 1), flip_prob=1, jitter_prob=0,
                       grayscale_prob=0, blur_prob=0)
    torch.testing.assert_close(flip(x, torch.Generator().manual_seed(0)), x.flip(-1))


def test_scarf_replaces_features_from_the_batch():
    x = torch.arange(200, dtype=torch.float32).reshape(20, 10)
    out = ScarfCorruption(corruption_rate=0.5, noise_std=0.0)(x, torch.Generator().manual_seed(0))
    changed = out != x
    assert 0.2 < changed.float().mean() < 0.6
    for j in range(10):  # every value still comes from the same feature's column
        assert set(out[:, j].tolist()) <= set(x[:, j].tolist())
    noisy = ScarfCorruption(0.0, 0.1)(x, torch.Generator().manual_seed(0))
    assert 0.05 < (noisy - x).std() < 0.15


def test_tabular_scaling_round_trip_and_feature_checks():
    tab = get_modality("tabular")
    x = np.random.default_rng(0).normal(3, 2, size=(50, 4)).astype(np.float32)
    x[:, 3] = 7.0  # a constant feature
    s = Samples(x, [str(i) for i in range(50)], None, "npy", feature_names=list("abcd"))
    for scaling in ("standard", "minmax", "none"):
        cfg = resolve_config("tiny", modality="tabular", overrides=[f"tabular.scaling={scaling}"])
        state = tab.io.fit(s, cfg)
        rows = tab.io.transform(s, state, "x")
        if scaling == "standard":
            np.testing.assert_allclose(rows[:, :3].mean(0), 0, atol=1e-5)
            np.testing.assert_allclose(rows[:, :3].std(0), 1, atol=1e-4)
        if scaling == "minmax":
            assert rows.min() >= -1 - 1e-6 and rows.max() <= 1 + 1e-6
        np.testing.assert_allclose(tab.io.inverse(rows, state), x, rtol=1e-5, atol=1e-5)
    other = Samples(x, s.ids, None, "csv", feature_names=list("abxd"))
    with pytest.raises(Exception, match="feature 3 is 'x'"):
        tab.io.transform(other, state, "other.csv")
    with pytest.raises(Exception, match="3 features but the run was trained on 4"):
        tab.io.transform(Samples(x[:, :3], s.ids, None, "npy"), state, "other.npy")


def test_image_preprocessing_round_trip():
    img = get_modality("image")
    u8 = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    s = Samples(u8, list("abcde"), None, "image-npy")
    cfg = resolve_config("tiny", modality="image")
    state = img.io.fit(s, cfg)
    assert (state["lo"], state["hi"], state["channels"]) == (0.0, 255.0, 3)
    rows = img.io.transform(s, state, "x")
    assert rows.shape == (5, 3, 6, 7) and rows.min() >= -1 and rows.max() <= 1
    np.testing.assert_array_equal(img.io.inverse(rows, state), u8)
    digits = Samples(np.linspace(0, 16, 5 * 64).reshape(5, 8, 8, 1), list("abcde"), None, "x")
    state = img.io.fit(digits, cfg)
    assert (state["lo"], state["hi"]) == (0.0, 16.0)
    with pytest.raises(Exception, match="is 6x7 .* trained on 8x8"):
        img.io.transform(s, state, "other")


def test_tabular_sampling_from_pure_noise_stays_finite():
    """z-scores are unbounded, but x0 predictions are clipped at a wide bound: with the cosine
    schedule's last abar ~ 0, an unclipped sampler turns noise into NaN."""
    torch.manual_seed(0)
    net = ResMLPDenoiser(6, widths=(16,), cond_dim=4, time_dim=8)
    z = torch.randn(5, 4)
    diffusion = Diffusion(1000, "cosine")
    sample = diffusion.sample(net, z, (5, 6), steps=10, strength=1.0, guidance_scale=2.0,
                              clip_x0=get_modality("tabular").clip_x0,
                              generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(sample).all() and sample.abs().max() <= 10.0 + 1e-4
