"""UNet1D: shapes for any length, conditioning, the null condition, gradients, size."""

from __future__ import annotations

import math

import pytest
import torch

from diffaug_genomics.models.denoisers import UNet1D, sinusoidal_embedding

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(**kw) -> UNet1D:
    torch.manual_seed(0)
    args = {"channels": (16, 32, 32), "cond_dim": 8, "time_dim": 16, "groups": 4} | kw
    return UNet1D(**args).eval()


def inputs(n: int, length: int, cond_dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, length, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    cond = torch.randn(n, cond_dim, generator=g)
    return x, t, cond


def test_sinusoidal_embedding():
    t = torch.tensor([0, 1, 999])
    emb = sinusoidal_embedding(t, 16)
    assert emb.shape == (3, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))
    assert float(emb[1, 0]) == pytest.approx(math.cos(1.0))
    assert float(emb[1, 8]) == pytest.approx(math.sin(1.0))
    assert sinusoidal_embedding(t, 7).shape == (3, 7)


@pytest.mark.parametrize("channels", [(16, 32), (16, 32, 32)])
@pytest.mark.parametrize("length", [16, 17, 60, 200, 203])
def test_shapes_for_any_length(channels, length):
    net = tiny(channels=channels)
    x, t, cond = inputs(2, length)
    assert net(x, t, cond).shape == (2, 4, length)
    assert net(x, t, None).shape == (2, 4, length)


def test_default_size_matches_calibrated_generator():
    net = UNet1D()  # (48, 96, 96), cond 128, time 128
    assert 650_000 <= n_params(net) <= 900_000  # calibration run: 0.75M


def test_changing_cond_changes_output():
    net = tiny()
    x, t, cond = inputs(4, 60)
    out = net(x, t, cond)
    out2 = net(x, t, cond.flip(0))
    # the condition moves the output by a visible fraction already at initialisation
    rel = (out - out2).norm() / out.norm()
    assert rel > 0.02
    # only the rows whose condition changed
    cond3 = cond.clone()
    cond3[1] = torch.randn(8)
    out3 = net(x, t, cond3)
    torch.testing.assert_close(out3[[0, 2, 3]], out[[0, 2, 3]])
    assert not torch.allclose(out3[1], out[1])


def test_changing_t_changes_output():
    net = tiny()
    x, t, cond = inputs(2, 60)
    assert not torch.allclose(net(x, t, cond), net(x, t + 100, cond))


def test_drop_cond_uses_the_null_condition():
    net = tiny()
    x, t, cond = inputs(4, 60)
    all_drop = torch.ones(4, dtype=torch.bool)
    out_a = net(x, t, cond, drop_cond=all_drop)
    out_b = net(x, t, torch.randn(4, 8) * 10, drop_cond=all_drop)
    out_none = net(x, t, None)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(out_a, out_none)
    some = torch.tensor([True, False, True, False])
    out_some = net(x, t, cond, drop_cond=some)
    torch.testing.assert_close(out_some[some], out_none[some])
    torch.testing.assert_close(out_some[~some], net(x, t, cond)[~some])


def test_condition_scale_is_normalised():
    net = tiny()
    x, t, cond = inputs(3, 60)
    torch.testing.assert_close(net(x, t, cond), net(x, t, 50.0 * cond), rtol=1e-4, atol=1e-4)


def test_gradient_reaches_every_parameter():
    net = tiny(dropout=0.1).train()
    x, t, cond = inputs(4, 60)
    drop = torch.tensor([True, False, False, True])
    net(x, t, cond, drop_cond=drop).pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bad_arguments():
    with pytest.raises(ValueError):
        UNet1D(channels=(12, 24), groups=8)
    net = tiny()
    x, t, cond = inputs(2, 60)
    with pytest.raises(ValueError):
        net(x, t, cond[:, :4])
    with pytest.raises(ValueError):
        net(x[:, :3], t, cond)
