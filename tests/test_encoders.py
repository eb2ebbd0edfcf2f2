"""ConvEncoder and ProjectionHead: shapes, reverse-complement invariance, gradients, size."""

from __future__ import annotations

import pytest
import torch

from diffaug_genomics.alphabet import reverse_complement_tensor
from diffaug_genomics.models.encoders import ConvEncoder, ProjectionHead

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def random_onehot(n: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float()


@pytest.mark.parametrize("length", [16, 60, 200, 203, 1000])
def test_shapes_for_several_lengths(length):
    enc = ConvEncoder(width=16, embed_dim=12)
    assert enc(random_onehot(3, length)).shape == (3, 12)


@pytest.mark.parametrize("length", [1, 5])
def test_very_short_inputs_skip_pooling(length):
    enc = ConvEncoder(width=8, embed_dim=4, n_blocks=2, norm="group")
    assert enc(torch.rand(2, 4, length)).shape == (2, 4)


def test_default_size_matches_calibrated_encoder():
    enc = ConvEncoder()  # width 128, 3 blocks, kernels 15/5, 128-d embedding
    assert enc.embed_dim == 128
    assert 500_000 <= n_params(enc) <= 560_000  # 535k in the calibration run
    assert n_params(ProjectionHead(128)) == 128 * 256 + 256 + 2 * 256 + 256 * 64 + 64


@pytest.mark.parametrize("train_mode", [False, True])
def test_rc_invariance(train_mode):
    torch.manual_seed(0)
    enc = ConvEncoder(width=16, embed_dim=8, rc=True)
    enc.train(train_mode)
    x = random_onehot(6, 60)
    z = enc(x)
    z_rc = enc(reverse_complement_tensor(x))
    torch.testing.assert_close(z, z_rc, rtol=1e-5, atol=1e-5)
    plain = ConvEncoder(width=16, embed_dim=8, rc=False).eval()
    assert not torch.allclose(plain(x), plain(reverse_complement_tensor(x)), atol=1e-4)


def test_rc_needs_four_channels():
    with pytest.raises(ValueError):
        ConvEncoder(in_channels=3, rc=True)


def test_generic_in_channels_and_norms():
    for norm in ("batch", "group", "none"):
        enc = ConvEncoder(in_channels=3, width=16, embed_dim=5, norm=norm)
        assert enc(torch.randn(4, 3, 40)).shape == (4, 5)
    with pytest.raises(ValueError):
        ConvEncoder(norm="layer")
    with pytest.raises(ValueError):
        ConvEncoder(width=16)(torch.randn(2, 5, 40))


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    enc = ConvEncoder(width=16, embed_dim=8, rc=True)
    head = ProjectionHead(8, hidden_dim=16, out_dim=4)
    head(enc(random_onehot(5, 60))).pow(2).sum().backward()
    for name, p in [*enc.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_sync_batchnorm_conversion():
    enc = torch.nn.SyncBatchNorm.convert_sync_batchnorm(ConvEncoder(width=16))
    kinds = {type(m).__name__ for m in enc.modules()}
    assert "SyncBatchNorm" in kinds and "BatchNorm1d" not in kinds
