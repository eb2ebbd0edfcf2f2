"""The Gaussian diffusion process: noise schedule, training loss and DDIM / DDPM sampling.

One :class:`Diffusion` object owns every schedule constant (as buffers, so ``.to(device)`` moves
them) and works with any denoiser called as ``model(x_t, t, cond, drop_cond=...)`` (see
:class:`diffaug_genomics.models.denoisers.UNet1D`). Vocabulary follows diffusers
(``num_train_timesteps``, ``beta_schedule``, ``prediction_type``, ``add_noise``,
``set_timesteps``, ``step``).

Units: ``x0`` is the clean sample in model layout ``(N, C, L)``; for DNA the one-hot scaled to
``[-1, 1]`` (``2 * onehot - 1``). Timesteps are integer indices ``0 .. T-1``; index ``t`` has
noise level ``alphas_cumprod[t]`` (``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``), and the
index ``-1`` stands for the clean sample (``abar = 1``).

Examples:
    >>> diffusion = Diffusion(1000, "cosine", "epsilon")
    >>> loss = diffusion.loss(unet, x0, z, p_uncond=0.1, generator=g)
    >>> x = diffusion.sample(unet, z, x0.shape, steps=20, strength=0.5, x_init=x0,
    ...                      guidance_scale=2.0, generator=g)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.config_schema import BETA_SCHEDULES, PREDICTION_TYPES, SAMPLERS
from diffaug_genomics.transfer import to_device

if TYPE_CHECKING:
    from diffaug_genomics.config import GeneratorConfig

__all__ = ["Diffusion", "cosine_alphas_cumprod"]



def cosine_alphas_cumprod(t: Tensor, num_train_timesteps: int, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal (2021) ``abar(t) = f(t) / f(0)``, ``f(t) = cos((t/T + s)/(1 + s) * pi/2)^2``.

    ``t`` is the continuous time in ``[0, T]`` (float64 recommended). Timestep index ``i`` of
    :class:`Diffusion` corresponds to ``t = i + 1`` (index 0 is the first noising step).
    """
    def f(u: Tensor) -> Tensor:
        return torch.cos((u / num_train_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(torch.zeros_like(t))


def _make_betas(schedule: str, steps: int, beta_start: float, beta_end: float) -> Tensor:
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if schedule == "cosine":
        t = torch.arange(steps + 1, dtype=torch.float64)
        abar = cosine_alphas_cumprod(t, steps)
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")


def _randn(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``like``'s."""
    device = generator.device if generator is not None else like.device
    out = torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype)
    return to_device(out, like.device)


def _clip_limit(clip_x0: bool | float) -> float:
    """The bound of an x0 clip: 1 for True, the number itself otherwise."""
    return 1.0 if clip_x0 is True else float(clip_x0)


class Diffusion(nn.Module):
    """Noise schedule, training loss and samplers (buffers only, no learnable parameters).

    Args:
        num_train_timesteps: T, the number of diffusion steps.
        beta_schedule: ``"cosine"`` (Nichol & Dhariwal; betas clipped at 0.999) or ``"linear"``
            (``beta_start`` to ``beta_end``, as DDPM and the paper).
        prediction_type: what the model predicts: ``"epsilon"`` (the noise) or
            ``"v_prediction"`` (``v = sqrt(abar) eps - sqrt(1 - abar) x0``, Salimans & Ho).
        beta_start, beta_end: the linear schedule's endpoints (ignored by cosine).

    Buffers, each ``(T,)`` float32, computed in float64: ``betas``, ``alphas``,
    ``alphas_cumprod``, ``alphas_cumprod_prev`` (1 at index 0), ``sqrt_alphas_cumprod``,
    ``sqrt_one_minus_alphas_cumprod``, ``posterior_variance`` (DDPM's ``beta_tilde``),
    ``posterior_mean_coef1`` (on x0) and ``posterior_mean_coef2`` (on x_t).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "cosine",
        prediction_type: str = "epsilon",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {prediction_type!r}")
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type
        self.beta_start = beta_start
        self.beta_end = beta_end

        betas = _make_betas(beta_schedule, self.num_train_timesteps, beta_start, beta_end)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        consts = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "posterior_variance": betas * (1 - abar_prev) / (1 - abar),
            "posterior_mean_coef1": betas * abar_prev.sqrt() / (1 - abar),
            "posterior_mean_coef2": (1 - abar_prev) * alphas.sqrt() / (1 - abar),
        }
        for name, value in consts.items():
            # Non-persistent: a checkpoint holds the constructor arguments, not the constants.
            self.register_buffer(name, value.float(), persistent=False)

    @classmethod
    def from_config(cls, generator_cfg: GeneratorConfig) -> Diffusion:
        """The schedule a run's ``generator`` config section names."""
        g = generator_cfg
        return cls(num_train_timesteps=g.num_train_timesteps, beta_schedule=g.beta_schedule,
                   prediction_type=g.prediction_type)

    def extra_repr(self) -> str:
        return (f"num_train_timesteps={self.num_train_timesteps}, "
                f"beta_schedule={self.beta_schedule!r}, prediction_type={self.prediction_type!r}")

    # ----------------------------------------------------------------------------------------
    # forward process and parametrisation

    def _abar(self, t: Tensor | int, like: Tensor) -> Tensor:
        """abar at timestep indices ``t`` (``-1`` -> 1), shaped to broadcast against ``like``."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long()
        abar = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], 1.0)
        abar = abar.to(device=like.device, dtype=like.dtype)
        return abar.reshape(-1, *([1] * (like.ndim - 1))) if abar.ndim else abar

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``; ``x0, noise (N, ...)``, ``t (N,)``."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def get_velocity(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The v-prediction target ``v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0``."""
        abar = self._abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the model is trained to predict: the noise, or v."""
        return noise if self.prediction_type == "epsilon" else self.get_velocity(x0, noise, t)

    def split_prediction(self, model_output: Tensor, x_t: Tensor, t: Tensor | int
                         ) -> tuple[Tensor, Tensor]:
        """Convert a model output at ``x_t`` into ``(x0_pred, eps_pred)``, both like ``x_t``."""
        abar = self._abar(t, x_t)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        if self.prediction_type == "epsilon":
            eps = model_output
            x0 = (x_t - s * eps) / a
        else:
            x0 = a * x_t - s * model_output
            eps = s * x_t + a * model_output
        return x0, eps

    # ----------------------------------------------------------------------------------------
    # training

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        cond: Tensor | None,
        p_uncond: float = 0.1,
        generator: torch.Generator | None = None,
        *,
        draw_rows: int | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Scalar MSE between the model output and its target (noise or v).

        Args:
            model: denoiser ``model(x_t, t, cond, drop_cond=...) -> (N, C, L)``.
            x0: ``(N, C, L)`` clean samples in ``[-1, 1]``.
            cond: ``(N, cond_dim)`` condition (the frozen encoder's embedding), or None.
            p_uncond: probability of replacing each sample's condition by the model's null
                condition (classifier-free guidance training).
            generator: the source of every random draw, in this order: timesteps
                ``t ~ U{0..T-1}``, the noise, the condition-drop mask. Same generator state,
                same loss.
            draw_rows: distributed training: draw for a global batch of this many rows and
                use rows ``offset : offset + N`` of the draws, so that every rank, drawing
                from the same generator, gets its own slice of what one process would draw
                for the whole global batch. None: draw for the ``N`` rows of ``x0``.
            offset: first row of this rank's slice (with ``draw_rows``).
        """
        n = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        rows = n if draw_rows is None else draw_rows
        t = to_device(torch.randint(0, self.num_train_timesteps, (rows,), generator=generator,
                                    device=gen_device), x0.device)
        noise = _randn((rows, *x0.shape[1:]), generator, x0)
        drop = to_device(torch.rand(rows, generator=generator, device=gen_device) < p_uncond,
                         x0.device)
        if draw_rows is not None:
            t, noise, drop = t[offset:offset + n], noise[offset:offset + n], drop[offset:offset + n]
        x_t = self.add_noise(x0, noise, t)
        out = model(x_t, t, cond, drop_cond=drop if cond is not None else None)
        return F.mse_loss(out.float(), self.target(x0, noise, t).float())

    # ----------------------------------------------------------------------------------------
    # sampling

    def set_timesteps(self, steps: int, strength: float = 1.0) -> Tensor:
        """Timestep indices visited by the sampler, decreasing, ``(n,)`` long.

        ``strength`` in ``(0, 1]`` sets the starting index ``t_start = round(strength * T) - 1``;
        ``n = max(1, round(strength * steps))`` timesteps are spaced evenly over
        ``[0, t_start + 1)`` with "trailing" spacing: the first is always ``t_start`` (for
        strength 1 the noisiest index, ``T - 1``), and with ``steps == T`` the sampler visits
        every index ``T-1, ..., 0`` as DDPM does. Returns an empty tensor when
        ``round(strength * T) == 0`` (nothing to do).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        t_start = int(round(strength * self.num_train_timesteps))
        if t_start == 0:
            return torch.zeros(0, dtype=torch.long)
        n = min(max(1, int(round(strength * steps))), t_start)
        ts = torch.round(torch.arange(n, 0, -1, dtype=torch.float64) * (t_start / n)).long() - 1
        return ts

    def step(
        self,
        model_output: Tensor,
        t: int,
        x_t: Tensor,
        t_prev: int,
        *,
        eta: float = 0.0,
        noise: Tensor | None = None,
        clip_x0: bool | float = True,
    ) -> Tensor:
        """One DDIM step (Song et al. 2021, eq. 12) from timestep ``t`` to ``t_prev`` (< t).

        ``t_prev = -1`` means the clean sample. ``x_prev = sqrt(abar') x0 +
        sqrt(1 - abar' - sigma^2) eps + sigma noise`` with ``sigma = eta * sqrt((1 - abar') /
        (1 - abar)) * sqrt(1 - abar / abar')``. ``x0`` is clipped to ``[-1, 1]`` when
        ``clip_x0`` and ``eps`` is then re-derived from the clipped ``x0``, so that with
        ``eta = 1`` and ``t_prev = t - 1`` the mean is exactly DDPM's posterior mean
        ``coef1 * x0 + coef2 * x_t`` and ``sigma^2`` its posterior variance. ``noise`` (like
        ``x_t``) is needed only when ``sigma > 0``; None means zero (the mean).
        """
        x0, eps = self.split_prediction(model_output, x_t, t)
        abar = self._abar(t, x_t)
        if clip_x0:
            lim = _clip_limit(clip_x0)
            x0 = x0.clamp(-lim, lim)
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        abar_prev = self._abar(t_prev, x_t)
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
        x_prev = abar_prev.sqrt() * x0 + direction
        if noise is not None and eta > 0:
            x_prev = x_prev + sigma * noise
        return x_prev

    def _ddpm_step(self, x0: Tensor, x_t: Tensor, t: int, noise: Tensor | None) -> Tensor:
        """DDPM ancestral step ``t -> t - 1``: posterior mean plus ``sqrt(beta_tilde_t) noise``."""
        c1 = self.posterior_mean_coef1[t].to(x_t.dtype)
        c2 = self.posterior_mean_coef2[t].to(x_t.dtype)
        mean = c1 * x0 + c2 * x_t
        if noise is None:
            return mean
        return mean + self.posterior_variance[t].to(x_t.dtype).sqrt() * noise

    def _model_output(self, model: nn.Module, x: Tensor, t: int, cond: Tensor | None,
                      guidance_scale: float) -> Tensor:
        n = x.shape[0]
        tt = torch.full((n,), t, dtype=torch.long, device=x.device)
        if cond is None or guidance_scale == 1.0:
            return model(x, tt, cond, drop_cond=None)
        drop = torch.cat([torch.zeros(n, dtype=torch.bool, device=x.device),
                          torch.ones(n, dtype=torch.bool, device=x.device)])
        out = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, cond]),
                    drop_cond=drop)
        out_cond, out_uncond = out[:n], out[n:]
        return out_uncond + guidance_scale * (out_cond - out_uncond)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        cond: Tensor | None,
        shape: Sequence[int] | None,
        *,
        steps: int = 50,
        sampler: str = "ddim",
        eta: float = 0.0,
        strength: float = 1.0,
        x_init: Tensor | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        clip_x0: bool | float = True,
    ) -> Tensor:
        """Generate ``(N, C, L)`` samples in ``[-1, 1]`` (when ``clip_x0``).

        Args:
            model: denoiser ``model(x_t, t, cond, drop_cond=...)``; run in eval mode for the
                call (its mode is restored afterwards).
            cond: ``(N, cond_dim)`` condition, or None for unconditional samples.
            shape: ``(N, C, L)``; may be None when ``x_init`` is given.
            steps: DDIM steps for the full schedule (strength 1); ignored by ``"ddpm"``.
            sampler: ``"ddim"`` (``steps`` evenly spaced timesteps, see :meth:`set_timesteps`;
                ``eta = 0`` deterministic, ``eta = 1`` with ``steps == T`` is DDPM ancestral
                sampling) or ``"ddpm"`` (all T ancestral steps with the posterior variance
                ``beta_tilde``).
            eta: DDIM stochasticity.
            strength: SDEdit. ``< 1``: noise ``x_init`` to index ``round(strength * T) - 1``
                and denoise from there in ``round(strength * steps)`` steps (for ``"ddpm"``,
                every index below). ``1``: start from pure noise, ``x_init`` ignored. ``0``:
                return ``x_init`` unchanged.
            x_init: ``(N, C, L)`` clean samples in ``[-1, 1]`` to start from when strength < 1.
            guidance_scale: classifier-free guidance ``w``: output ``= uncond + w * (cond -
                uncond)``, the two passes batched together; 1 is one plain conditional pass.
            generator: the source of every random draw (start noise, then per-step noise), so
                the same generator state gives the same samples.
            clip_x0: clip each x0 prediction to ``[-1, 1]`` (True), to ``[-c, c]`` for a number
                ``c`` (unbounded data such as z-scores), or not at all (False).

        Model evaluations: ``len(timesteps)`` (twice the batch when guided).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if shape is None:
            if x_init is None:
                raise ValueError("give shape or x_init")
            shape = x_init.shape
        shape = tuple(int(s) for s in shape)
        partial = strength < 1.0
        if partial and (x_init is None or tuple(x_init.shape) != shape):
            raise ValueError(f"strength < 1 needs x_init of shape {shape}")
        if cond is not None and cond.shape[0] != shape[0]:
            raise ValueError(f"cond has {cond.shape[0]} rows for {shape[0]} samples")

        n_steps = self.num_train_timesteps if sampler == "ddpm" else steps
        timesteps = self.set_timesteps(n_steps, strength).tolist()
        ref = self.alphas_cumprod
        device = cond.device if cond is not None else (
            x_init.device if x_init is not None else ref.device)
        like = torch.empty(0, device=device, dtype=torch.float32)
        if not timesteps:
            return x_init.to(device=device, dtype=torch.float32).clone()

        start_noise = _randn(shape, generator, like)
        if partial:
            t0 = torch.full((shape[0],), timesteps[0], dtype=torch.long, device=device)
            x = self.add_noise(x_init.to(device=device, dtype=torch.float32), start_noise, t0)
        else:
            x = start_noise

        was_training = model.training
        model.eval()
        try:
            for i, t in enumerate(timesteps):
                t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
                out = self._model_output(model, x, t, cond, guidance_scale).to(x.dtype)
                if sampler == "ddpm":
                    x0, _ = self.split_prediction(out, x, t)
                    if clip_x0:
                        x0 = x0.clamp(-_clip_limit(clip_x0), _clip_limit(clip_x0))
                    noise = _randn(shape, generator, x) if t > 0 else None
                    x = self._ddpm_step(x0, x, t, noise)
                else:
                    noise = _randn(shape, generator, x) if (eta > 0 and t_prev >= 0) else None
                    x = self.step(out, t, x, t_prev, eta=eta, noise=noise, clip_x0=clip_x0)
        finally:
            model.train(was_training)
        return x
