"""Diffusion: schedule constants, parametrisations, DDIM / DDPM / SDEdit semantics, guidance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.models.denoisers import UNet1D

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyModel(nn.Module):
    """A fixed, cheap, nonlinear function of (x_t, t, cond) with a distinct null condition."""

    def __init__(self, cond_dim: int = 3) -> None:
        super().__init__()
        self.register_buffer("w", torch.linspace(-1, 1, cond_dim))

    def forward(self, x, t, cond, drop_cond=None):
        n = x.shape[0]
        c = torch.full((n,), 0.3) if cond is None else torch.tanh(cond @ self.w)
        if cond is not None and drop_cond is not None:
            c = torch.where(drop_cond, torch.full_like(c, 0.3), c)
        phase = t.float()[:, None, None] / 7.0
        return 0.5 * torch.sin(x + phase) + c[:, None, None] * torch.cos(2 * x)


class Wrapped(nn.Module):
    """Calls `model` with a fixed rule, to check what `sample` computes."""

    def __init__(self, model, rule):
        super().__init__()
        self.model, self.rule = model, rule

    def forward(self, x, t, cond, drop_cond=None):
        return self.rule(self.model, x, t, cond)


def tiny_unet(cond_dim: int = 3) -> UNet1D:
    torch.manual_seed(0)
    return UNet1D(channels=(8, 16), cond_dim=cond_dim, time_dim=16, groups=4)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# schedule


def test_linear_schedule_constants():
    d = Diffusion(1000, "linear")
    assert float(d.betas[0]) == pytest.approx(1e-4)
    assert float(d.betas[-1]) == pytest.approx(0.02)
    assert (d.betas.diff() > 0).all()
    abar = d.alphas_cumprod.double()
    assert (abar.diff() < 0).all() and float(abar[0]) == pytest.approx(1 - 1e-4)
    np.testing.assert_allclose(abar.numpy(), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)),
                               rtol=1e-5)
    assert d.betas.dtype == torch.float32 and len(list(d.parameters())) == 0


def test_cosine_schedule_matches_nichol_dhariwal():
    T, s = 1000, 0.008
    d = Diffusion(T, "cosine")

    def f(u):
        return np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2

    expected = f(np.arange(1, T + 1)) / f(0.0)  # index i is t = i + 1
    abar = d.alphas_cumprod.double().numpy()
    # beta is clipped at 0.999 only at the very end of the schedule
    unclipped = d.betas.numpy() < 0.999
    assert unclipped[: T - 5].all()
    np.testing.assert_allclose(abar[unclipped], expected[unclipped], rtol=1e-5, atol=1e-7)
    assert (abar > 0).all() and (abar <= 1).all() and (np.diff(abar) < 0).all()
    assert (d.betas <= 0.999).all()
    # posterior constants
    torch.testing.assert_close(d.posterior_variance[0], torch.tensor(0.0))
    torch.testing.assert_close(
        d.posterior_variance[10],
        d.betas[10] * (1 - d.alphas_cumprod[9]) / (1 - d.alphas_cumprod[10]),
    )


def test_bad_arguments():
    with pytest.raises(ValueError):
        Diffusion(10, "quadratic")
    with pytest.raises(ValueError):
        Diffusion(10, prediction_type="sample")
    with pytest.raises(ValueError):
        Diffusion(10).sample(ToyModel(), None, (1, 4, 8), sampler="euler")
    with pytest.raises(ValueError):
        Diffusion(10).sample(ToyModel(), None, (1, 4, 8), strength=0.5)  # no x_init


# --------------------------------------------------------------------------------------------
# forward process and parametrisation


def test_add_noise_formula():
    d = Diffusion(100, "linear")
    x0 = torch.randn(3, 4, 10, generator=gen())
    noise = torch.randn(3, 4, 10, generator=gen(1))
    t = torch.tensor([0, 50, 99])
    out = d.add_noise(x0, noise, t)
    for i, ti in enumerate(t.tolist()):
        abar = float(np.prod(1 - np.linspace(1e-4, 0.02, 100)[: ti + 1]))
        expected = math.sqrt(abar) * x0[i] + math.sqrt(1 - abar) * noise[i]
        torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_v_prediction_round_trip(schedule):
    d = Diffusion(1000, schedule, "v_prediction")
    x0 = torch.randn(4, 4, 12, generator=gen())
    eps = torch.randn(4, 4, 12, generator=gen(1))
    t = torch.tensor([0, 10, 500, 990])
    x_t = d.add_noise(x0, eps, t)
    v = d.get_velocity(x0, eps, t)
    torch.testing.assert_close(d.target(x0, eps, t), v)
    x0_hat, eps_hat = d.split_prediction(v, x_t, t)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-4, atol=1e-4)
    # and the epsilon parametrisation recovers x0 from the true noise (away from t ~ T, where
    # dividing by sqrt(abar) ~ 0 amplifies float32 rounding)
    d_eps = Diffusion(1000, schedule, "epsilon")
    t2 = t.clamp(max=500)
    x_t2 = d_eps.add_noise(x0, eps, t2)
    x0_hat, eps_hat = d_eps.split_prediction(eps, x_t2, t2)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps_hat, eps)


# --------------------------------------------------------------------------------------------
# sampling


def test_set_timesteps():
    d = Diffusion(1000)
    ts = d.set_timesteps(50)
    assert ts[0] == 999 and ts[-1] == 19 and len(ts) == 50 and (ts.diff() == -20).all()
    assert d.set_timesteps(1000).tolist() == list(range(999, -1, -1))
    half = d.set_timesteps(20, strength=0.5)
    assert half[0] == 499 and len(half) == 10
    assert len(d.set_timesteps(20, strength=0.0)) == 0
    assert d.set_timesteps(20, strength=0.001).tolist() == [0]


@pytest.mark.parametrize("schedule,prediction", [("linear", "epsilon"), ("cosine", "v_prediction")])
def test_ddim_eta1_all_steps_equals_ddpm_ancestral(schedule, prediction):
    """DDIM with eta = 1 and steps = T draws the same noise and takes the same ancestral steps."""
    T = 30
    d = Diffusion(T, schedule, prediction)
    model = ToyModel()
    cond = torch.randn(3, 3, generator=gen(5))
    a = d.sample(model, cond, (3, 4, 9), steps=T, eta=1.0, generator=gen(1))
    b = d.sample(model, cond, (3, 4, 9), sampler="ddpm", generator=gen(1))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the same with SDEdit from a partially noised start
    x_init = torch.rand(3, 4, 9, generator=gen(2)) * 2 - 1
    a = d.sample(model, cond, None, steps=T, eta=1.0, strength=0.5, x_init=x_init,
                 generator=gen(3))
    b = d.sample(model, cond, None, sampler="ddpm", strength=0.5, x_init=x_init,
                 generator=gen(3))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_ddim_eta1_step_mean_is_the_ddpm_posterior_mean():
    """One step t -> t-1 with eta = 1 and zero noise is the posterior mean computed by hand."""
    T = 1000
    d = Diffusion(T, "linear")
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    x_t = torch.randn(2, 4, 7, generator=gen())
    eps = torch.randn(2, 4, 7, generator=gen(1)) * 0.1
    for t in (1, 400, 999):
        out = d.step(eps, t, x_t, t - 1, eta=1.0, noise=None, clip_x0=False)
        x0 = (x_t - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t])
        c1 = betas[t] * math.sqrt(abar[t - 1]) / (1 - abar[t])
        c2 = (1 - abar[t - 1]) * math.sqrt(1 - betas[t]) / (1 - abar[t])
        torch.testing.assert_close(out, c1 * x0 + c2 * x_t, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_eta0_with_an_oracle_recovers_x0(prediction):
    """A denoiser that knows x0 exactly: deterministic DDIM lands on x0 for any step count."""
    d = Diffusion(1000, "cosine", prediction)
    target = torch.rand(2, 4, 11, generator=gen()) * 1.6 - 0.8

    class Oracle(nn.Module):
        def forward(self, x, t, cond, drop_cond=None):
            abar = d.alphas_cumprod[t][:, None, None]
            eps = (x - abar.sqrt() * target) / (1 - abar).sqrt()
            return eps if prediction == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * target

    for steps in (3, 17):
        out = d.sample(Oracle(), None, target.shape, steps=steps, generator=gen(steps))
        torch.testing.assert_close(out, target, rtol=1e-4, atol=1e-4)


def test_sdedit_strength_semantics():
    d = Diffusion(1000, "cosine")
    model = tiny_unet()
    cond = torch.randn(2, 3, generator=gen())
    x_init = torch.rand(2, 4, 20, generator=gen(1)) * 2 - 1
    same = d.sample(model, cond, None, strength=0.0, x_init=x_init, generator=gen())
    torch.testing.assert_close(same, x_init)
    near = d.sample(model, cond, None, strength=0.001, x_init=x_init, generator=gen())
    assert (near - x_init).abs().max() < 0.05  # one step from t = 0
    far = d.sample(model, cond, None, steps=5, strength=1.0, x_init=x_init, generator=gen())
    plain = d.sample(model, cond, (2, 4, 20), steps=5, generator=gen())
    torch.testing.assert_close(far, plain)  # strength 1 ignores x_init
    assert (far - x_init).abs().max() > 0.5


def test_determinism_and_mode_restored():
    d = Diffusion(1000, "cosine")
    model = tiny_unet().train()
    cond = torch.randn(2, 3, generator=gen())
    a = d.sample(model, cond, (2, 4, 20), steps=4, eta=0.5, generator=gen(7))
    b = d.sample(model, cond, (2, 4, 20), steps=4, eta=0.5, generator=gen(7))
    c = d.sample(model, cond, (2, 4, 20), steps=4, eta=0.5, generator=gen(8))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert model.training
    assert a.abs().max() <= 1.0 + 1e-6  # x0 clipped at the last step


def test_guidance():
    d = Diffusion(100, "cosine")
    model = tiny_unet().eval()
    cond = torch.randn(3, 3, generator=gen())
    shape = (3, 4, 16)

    def plain(m, x, t, c):
        return m(x, t, c)

    def uncond(m, x, t, c):
        return m(x, t, None)

    def guided(m, x, t, c):
        u = m(x, t, None)
        return u + 2.5 * (m(x, t, c) - u)

    def run(net, w, c=cond):
        return d.sample(net, c, shape, steps=5, guidance_scale=w, generator=gen(3))

    torch.testing.assert_close(run(model, 1.0), run(Wrapped(model, plain), 1.0))
    torch.testing.assert_close(run(model, 2.5), run(Wrapped(model, guided), 1.0),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(model, 0.0), run(Wrapped(model, uncond), 1.0),
                               rtol=1e-4, atol=1e-4)
    assert not torch.allclose(run(model, 2.5), run(model, 1.0))


def test_changing_cond_changes_the_sample():
    d = Diffusion(100, "cosine")
    model = tiny_unet()
    cond = torch.randn(2, 3, generator=gen())
    a = d.sample(model, cond, (2, 4, 16), steps=5, generator=gen(1))
    b = d.sample(model, -cond, (2, 4, 16), steps=5, generator=gen(1))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("length", [60, 200, 203])
def test_shapes(length):
    d = Diffusion(1000, "cosine", "v_prediction")
    model = tiny_unet()
    cond = torch.randn(2, 3)
    out = d.sample(model, cond, (2, 4, length), steps=2, guidance_scale=2.0, generator=gen())
    assert out.shape == (2, 4, length) and out.dtype == torch.float32
    x0 = torch.rand(2, 4, length) * 2 - 1
    assert d.loss(model, x0, cond, generator=gen()).shape == ()


# --------------------------------------------------------------------------------------------
# training


def test_loss_is_reproducible_and_uses_the_generator():
    d = Diffusion(1000, "cosine")
    model = tiny_unet()
    x0 = torch.rand(4, 4, 16, generator=gen()) * 2 - 1
    cond = torch.randn(4, 3, generator=gen(1))
    a = d.loss(model, x0, cond, generator=gen(5))
    b = d.loss(model, x0, cond, generator=gen(5))
    c = d.loss(model, x0, cond, generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert d.loss(model, x0, None, generator=gen(5)).shape == ()


def test_loss_matches_manual_target():
    d = Diffusion(50, "linear", "v_prediction")
    model = ToyModel()
    x0 = torch.rand(3, 4, 8, generator=gen()) * 2 - 1
    cond = torch.randn(3, 3, generator=gen(1))
    g = gen(9)
    t = torch.randint(0, 50, (3,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    drop = torch.rand(3, generator=g) < 0.5
    expected = (model(d.add_noise(x0, noise, t), t, cond, drop)
                - d.get_velocity(x0, noise, t)).pow(2).mean()
    torch.testing.assert_close(d.loss(model, x0, cond, p_uncond=0.5, generator=gen(9)), expected)


def test_tiny_unet_overfits_a_fixed_batch():
    torch.manual_seed(0)
    d = Diffusion(1000, "cosine")
    model = UNet1D(channels=(16, 32), cond_dim=4, time_dim=16, groups=4)
    idx = torch.randint(0, 4, (8, 32), generator=gen())
    x0 = torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float() * 2 - 1
    cond = torch.randn(8, 4, generator=gen(1))

    def eval_loss():
        with torch.no_grad():  # same t and noise every time
            return sum(float(d.loss(model, x0, cond, p_uncond=0.0, generator=gen(100 + k)))
                       for k in range(4)) / 4

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(2)
    for _ in range(30):
        opt.zero_grad()
        d.loss(model, x0, cond, generator=g).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
