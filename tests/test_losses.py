"""Losses against direct formulas, and the distributed gather against one process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.special import gamma

from diffaug_genomics.losses import (
    gather_with_grad,
    info_nce_loss,
    soft_contrastive_loss,
    squared_distances,
    student_t_similarity,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_similarity(d: float, nu: float) -> float:
    c = gamma((nu + 1) / 2) / (math.sqrt(nu * math.pi) * gamma(nu / 2))
    return 2 * math.pi * c**2 * (1 + d / nu) ** (-(nu + 1))


def naive_soft_loss(z, y, y_aug, nu_z, nu_y, eps=1e-5) -> float:
    z, y, y_aug = (np.asarray(a, dtype=np.float64) for a in (z, y, y_aug))
    b = len(z)
    total = 0.0
    for i in range(b):
        for j in range(b):
            p = naive_similarity(float(((z[i] - z[j]) ** 2).sum()), nu_z)
            q = naive_similarity(float(((y[i] - y_aug[j]) ** 2).sum()), nu_y)
            total += -(p * math.log(q + eps) + (1 - p) * math.log(1 - q + eps))
    return total / (b * b)


def naive_nt_xent(a, b, temperature) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    views = np.concatenate([a, b])
    views = views / np.linalg.norm(views, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = {k: float(views[i] @ views[k]) / temperature for k in range(2 * n) if k != i}
        denom = sum(math.exp(s) for s in sims.values())
        total += -math.log(math.exp(sims[pos]) / denom)
    return total / (2 * n)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_squared_distances_matches_direct(gen):
    a = torch.randn(5, 3, generator=gen, dtype=torch.float64) + 100.0
    b = torch.randn(4, 3, generator=gen, dtype=torch.float64) + 100.0
    direct = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(a, b), direct, rtol=1e-9, atol=1e-9)
    assert (squared_distances(a, a) >= 0).all()


@pytest.mark.parametrize("nu", [0.01, 0.1, 1.0, 10.0, 100.0, 300.0])
def test_student_t_similarity_matches_scipy_and_stays_in_unit_interval(nu):
    d = torch.tensor([0.0, 1e-6, 0.01, 0.5, 3.0, 50.0], dtype=torch.float64)
    s = student_t_similarity(d, nu)
    expected = torch.tensor([naive_similarity(float(v), nu) for v in d], dtype=torch.float64)
    torch.testing.assert_close(s, expected, rtol=1e-9, atol=1e-12)
    assert (s >= 0).all() and (s <= 1).all()
    assert float(s[0]) < 1.0  # 2*pi*C(nu)^2 < 1 for every finite nu
    s32 = student_t_similarity(torch.full((3,), 0.0), nu)
    assert (s32 <= 1).all() and torch.isfinite(s32).all()


def test_student_t_similarity_large_nu_is_gaussian_and_below_one():
    d = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    for nu in (1e4, 1e6, 1e9):  # scipy's gamma overflows here; lgamma does not
        s = student_t_similarity(d, nu)
        assert torch.isfinite(s).all() and (s <= 1).all()
        torch.testing.assert_close(s, torch.exp(-d), rtol=1e-3, atol=0)


@pytest.mark.parametrize("nu_z,nu_y", [(100.0, 0.01), (5.0, 1.0)])
def test_soft_loss_matches_naive_formula(gen, nu_z, nu_y):
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64) * 0.3
    y = torch.randn(5, 2, generator=gen, dtype=torch.float64) * 0.2
    y_aug = y + 0.05 * torch.randn(5, 2, generator=gen, dtype=torch.float64)
    loss = soft_contrastive_loss(z, y, y_aug, nu_z=nu_z, nu_y=nu_y)
    expected = naive_soft_loss(z, y, y_aug, nu_z, nu_y)
    assert loss.dtype == torch.float64
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    loss32 = soft_contrastive_loss(z.float(), y.float(), y_aug.float(), nu_z=nu_z, nu_y=nu_y)
    assert float(loss32) == pytest.approx(expected, rel=1e-4)


def test_soft_loss_diagonal_is_the_positive(gen):
    z = torch.randn(6, 8, generator=gen) * 3.0  # far apart: off-diagonal P ~ 0
    y = torch.randn(6, 2, generator=gen) * 3.0
    aligned = soft_contrastive_loss(z, y, y.clone())
    shuffled = soft_contrastive_loss(z, y, y[torch.roll(torch.arange(6), 1)])
    random = soft_contrastive_loss(z, y, torch.randn(6, 2, generator=gen) * 3.0)
    assert float(aligned) < float(random) and float(aligned) < float(shuffled)


def test_soft_loss_detach_and_finite_gradients(gen):
    z = torch.randn(6, 8, generator=gen)
    z[1] = z[0]  # duplicate rows: zero distances off the diagonal
    z.requires_grad_(True)
    y = torch.randn(6, 3, generator=gen)
    y[2] = y[3]
    y.requires_grad_(True)
    y_aug = y.detach().clone().requires_grad_(True)
    soft_contrastive_loss(z, y, y_aug).backward()
    assert z.grad is None  # target detached by default
    assert torch.isfinite(y.grad).all() and torch.isfinite(y_aug.grad).all()
    assert y.grad.abs().sum() > 0
    soft_contrastive_loss(z, y, y_aug, detach_target=False).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_soft_loss_half_precision_inputs(gen):
    z = torch.randn(4, 8, generator=gen)
    y = torch.randn(4, 2, generator=gen)
    ref = soft_contrastive_loss(z, y, y + 0.1)
    half = soft_contrastive_loss(z.bfloat16(), y.bfloat16(), (y + 0.1).bfloat16())
    assert half.dtype == torch.float32
    assert float(half) == pytest.approx(float(ref), rel=0.05)


def test_info_nce_matches_naive_formula(gen):
    a = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    for temperature in (0.2, 1.0):
        loss = info_nce_loss(a, b, temperature=temperature)
        assert float(loss) == pytest.approx(naive_nt_xent(a, b, temperature), rel=1e-9)


def test_info_nce_alignment_and_gradients(gen):
    a = torch.randn(16, 8, generator=gen, requires_grad=True)
    aligned = info_nce_loss(a, a.detach() + 0.01 * torch.randn(16, 8, generator=gen))
    random = info_nce_loss(a, torch.randn(16, 8, generator=gen))
    assert aligned.item() < random.item()
    aligned.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_shape_errors():
    with pytest.raises(ValueError):
        info_nce_loss(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        soft_contrastive_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 2))


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


# --------------------------------------------------------------------------------------------
# two gloo processes against one process on the concatenated batch

WORLD = 2
LOCAL_B = 4


def _global_batch():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(WORLD * LOCAL_B, 6, generator=g, dtype=torch.float64)
    x_aug = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, x_aug


def _model():
    torch.manual_seed(7)
    enc = torch.nn.Linear(6, 5).double()
    head = torch.nn.Linear(5, 3).double()
    return enc, head


def _losses(enc, head, x, x_aug, gather):
    z, z_aug = enc(x), enc(x_aug)
    y, y_aug = head(z), head(z_aug)
    return {
        "soft": soft_contrastive_loss(z, y, y_aug, nu_z=5.0, nu_y=1.0, detach_target=False,
                                      gather=gather),
        "nce": info_nce_loss(y, y_aug, temperature=0.5, gather=gather),
    }


def _grads(loss, params):
    return [g.clone() for g in torch.autograd.grad(loss, params, retain_graph=True)]


def _gather_worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        x, x_aug = _global_batch()
        # single process on the concatenated batch
        enc, head = _model()
        params = [*enc.parameters(), *head.parameters()]
        ref = _losses(enc, head, x, x_aug, gather=False)
        # this rank's share, candidates gathered from both ranks
        sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        local = _losses(enc, head, x[sl], x_aug[sl], gather=True)
        for name in ("soft", "nce"):
            ref_grads = _grads(ref[name], params)
            local_grads = _grads(local[name], params)
            mean_loss = local[name].detach().clone()
            dist.all_reduce(mean_loss)
            torch.testing.assert_close(mean_loss / WORLD, ref[name].detach())
            for g_local, g_ref in zip(local_grads, ref_grads, strict=True):
                dist.all_reduce(g_local)  # what DDP does, then divides by the world size
                torch.testing.assert_close(g_local / WORLD, g_ref)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_gather_two_processes_equal_one_process(tmp_path):
    mp.spawn(_gather_worker, args=(str(tmp_path / "rendezvous"),), nprocs=WORLD, join=True)
