"""Reading a run directory's models: the finished run ``embed`` and ``generate`` load
(:func:`load_run`), and the encoder of any saved state (:func:`encoder_from`, also what
``report`` embeds with). Where each file is: :mod:`diffaug_genomics.run_files`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from diffaug_genomics.config import Config, config_from_dict, load_yaml
from diffaug_genomics.errors import Busy, ConfigError, InputError
from diffaug_genomics.guards import require_finite
from diffaug_genomics.lock_holder import current_writer, still_training
from diffaug_genomics.modalities.arrays import load_preprocess
from diffaug_genomics.modalities.base import Modality
from diffaug_genomics.modalities.interface import TrainedRun
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.positives.generated import generated_positives
from diffaug_genomics.progress import LOG
from diffaug_genomics.run_files import PREPROCESS, RunPaths
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train.precision import run_precision, wrap

if TYPE_CHECKING:
    from diffaug_genomics.diffusion import Diffusion


@dataclass
class FinishedRun:
    """A trained encoder (eval mode), optionally its generator, and the run's configuration."""

    run_dir: Path
    config: Config
    modality: Modality
    sample_shape: tuple[int, ...]
    encoder: nn.Module
    config_hash: str
    denoiser: nn.Module | None = None
    sampler: nn.Module | None = None
    """The denoiser as the sampler calls it: in the run's ``precision`` resolved on the device
    (a run from before that key existed: float32)."""

    @property
    def trained(self) -> TrainedRun:
        """What the modality's input and output are told of this run."""
        return TrainedRun(self.run_dir, self.config, self.modality.name, self.sample_shape,
                          self.modality.from_diffusion)

    def sample_positives(self, diffusion: Diffusion, x: torch.Tensor, per_sequence: int, *,
                         steps: int, strength: float, guidance_scale: float,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_sequence`` generated positives of each sample of a model-layout batch ``x``
        ``(n, ...)``, conditioned on its embedding: ``(x repeated (n*K, ...), samples (n*K, ...)
        in the diffusion's space)``; samples of one source are consecutive. The denoiser runs
        as :attr:`sampler`; the embedding is float32, as in training."""
        with torch.no_grad():
            z = self.encoder(x)
        sample = generated_positives(diffusion, self.sampler, self.config.bank,
                                     self.modality.to_diffusion(x), z, per_sequence, steps=steps,
                                     strength=strength, guidance_scale=guidance_scale,
                                     generator=generator, clip_x0=self.modality.clip_x0)
        require_finite(sample, f"samples of {RunPaths(self.run_dir).generator}")
        xk = x.repeat_interleave(per_sequence, dim=0)
        return xk, sample


def load_run(run_dir: str | Path, device: torch.device, with_generator: bool = False) -> FinishedRun:
    """Load ``encoder.pt`` (and ``generator.pt``) from a run directory onto ``device``.

    Raises :class:`InputError` if the directory holds no finished run, :class:`Busy` (exit 75)
    if it is being trained right now. ``fit`` writes ``generator.pt`` before ``encoder.pt``
    and never rewrites them, so a run whose ``encoder.pt`` exists is complete, writer or not.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError("run directory not found", path=root)
    paths = RunPaths(root)
    enc_path = paths.encoder
    writer = current_writer(root)  # a fit writing the run right now
    if not enc_path.exists():
        if writer is not None:
            raise Busy(still_training(root, writer))
        hint = " (training has not finished: resume it with diffaug fit --resume)" \
            if paths.latest.exists() else ""
        raise InputError(f"no finished run here: encoder.pt is missing{hint}", path=root)
    if writer is not None:  # its final files are complete: encoder.pt is written last, once
        LOG.warning("%s: the run is in progress (%s is finishing it): using its final files",
                    root, writer.describe())
    saved: dict[str, Any] = ckpt.load(enc_path, ckpt.ENCODER_FORMAT)
    with _usable(enc_path):
        cfg = config_from_dict(saved["config"])
        modality = get_modality(saved["modality"])
        shape = tuple(int(s) for s in saved["sample_shape"])
        config_hash = str(saved["config_hash"])
    encoder = encoder_from(saved, cfg, modality, shape, enc_path)
    _check_preprocess_matches(paths, modality.name, enc_path)
    run = FinishedRun(root, cfg, modality, shape, encoder.to(device).eval(), config_hash)
    if with_generator:
        gen_path = paths.generator
        if not gen_path.exists():
            raise InputError(f"no generator.pt: this run was trained with --augment "
                             f"{cfg.augment}, which has no generator", path=root)
        gen = ckpt.load(gen_path, ckpt.GENERATOR_FORMAT)
        if str(gen.get("config_hash")) != config_hash:
            raise InputError("generator.pt comes from another run than encoder.pt (config "
                             "hashes differ)", path=gen_path)
        try:
            denoiser = modality.build_denoiser(cfg, shape, cfg.encoder.embed_dim)
            denoiser.load_state_dict(gen["denoiser"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise InputError(f"does not fit this run's encoder ({ckpt.describe(exc)})",
                             path=gen_path) from None
        run.denoiser = denoiser.to(device).eval()
        precision = run_precision(cfg.precision, _records(paths.config), device)
        run.sampler = wrap(run.denoiser, device, precision)
    return run


def _records(config_yaml: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a mapping (its records: ``resolved_precision``...); empty
    when it is missing or unreadable (the records only refine what the checkpoint says)."""
    try:
        return load_yaml(config_yaml)
    except (ConfigError, OSError, ValueError):
        return {}


def encoder_from(saved: dict[str, Any], cfg: Config, modality: Modality,
                 sample_shape: tuple[int, ...], path: Path) -> nn.Module:
    """The encoder of a saved state (``encoder.pt``, or a checkpoint: its ``"encoder"``
    weights), built from the run's configuration on the CPU, in evaluation mode; an
    :class:`InputError` naming ``path`` when the weights do not fit it."""
    with _usable(path):
        encoder = modality.build_encoder(cfg, sample_shape)
        encoder.load_state_dict(saved["encoder"])
    return encoder.eval()


@contextmanager
def _usable(path: Path) -> Iterator[None]:
    """What goes wrong reading a saved run's record or weights: one :class:`InputError`
    naming ``path``."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"does not describe a usable run ({exc})", path=path) from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise InputError(f"does not describe a usable run ({ckpt.describe(exc)})",
                         path=path) from None


def _check_preprocess_matches(paths: RunPaths, modality: str, enc_path: Path) -> None:
    """An image / tabular run's ``preprocess.json`` must be of the encoder's modality."""
    if not paths.preprocess.is_file():
        return
    stored = load_preprocess(paths.root).get("modality")
    if stored != modality:
        raise InputError(f"holds a '{modality}' encoder but {PREPROCESS} is for "
                         f"'{stored}' (files of different runs mixed?)", path=enc_path)
