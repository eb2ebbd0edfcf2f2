"""EvoAug 1.0.6's own augmentations as a second hand-designed baseline (benchmarks only).

``--augment handcrafted`` uses our re-implementation (:mod:`diffaug_genomics.positives.
handcrafted`); this module runs the published package's ``evoaug.augment`` classes instead, the
way its ``RobustModel`` applies them, to check that our hand-designed baseline is not the weaker
of the two. It plugs into the training loop as a modality (``dna-evoaug``: DNA in every way but
its hand-designed augmentation), through the same ``--backbone module:factory`` hook users have:

    diffaug fit train.h5 -o run --augment handcrafted --modality dna-evoaug \\
        --backbone evoaug_baseline:dna_evoaug          # with benchmarks/ on PYTHONPATH

Only ``evoaug.augment`` is imported (it needs nothing but torch); ``evoaug.evoaug`` would pull
in PyTorch Lightning. ``make bench-quality`` installs ``evoaug==1.0.6`` into the virtualenv and
skips this baseline when that fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch

from diffaug_genomics.modalities.base import Augment, Modality
from diffaug_genomics.modalities.dna import DNA

NAME = "dna-evoaug"
INSERTION = 2
"""Index of ``RandomInsertion`` in :attr:`EvoAugDNA.augments`."""


def available() -> bool:
    """True when ``evoaug`` is importable."""
    return importlib.util.find_spec("evoaug") is not None


class EvoAugDNA:
    """EvoAug's README augmentation list, applied as ``RobustModel._apply_augment`` does.

    Each sequence gets exactly ``max_augs_per_seq`` (``hard_aug=True``) distinct augmentations
    out of: deletion (0-20 bp), reverse complement (p = 0.5), insertion (0-20 bp), translocation
    (0-20 bp), mutation (5 %), Gaussian noise (sd 0.2), applied in list order. As in
    ``RobustModel``, a sequence without an insertion gets ``insert_max`` random bases appended,
    so every view is ``(B, 4, L + 20)``: the encoder pools globally and takes any length.

    EvoAug draws from torch's global RNG (and NumPy's, for the subset); here both come from a
    seed drawn from the loop's ``generator``, inside :func:`torch.random.fork_rng`, so runs stay
    reproducible and the global RNG is left as it was.
    """

    def __init__(self, max_augs_per_seq: int = 2) -> None:
        from evoaug import augment

        self.augments = [
            augment.RandomDeletion(delete_min=0, delete_max=20),
            augment.RandomRC(rc_prob=0.5),
            augment.RandomInsertion(insert_min=0, insert_max=20),
            augment.RandomTranslocation(shift_min=0, shift_max=20),
            augment.RandomMutation(mutate_frac=0.05),
            augment.RandomNoise(noise_mean=0.0, noise_std=0.2),
        ]
        self.max_augs_per_seq = max_augs_per_seq
        self.insert_max = self.augments[INSERTION].insert_max

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 4, L)`` float one-hot -> ``(B, 4, L + 20)`` augmented views."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = []
            for seq in x.cpu():
                seq = seq.unsqueeze(0)
                chosen = sorted(torch.randperm(len(self.augments))[:self.max_augs_per_seq].tolist())
                for i in chosen:
                    seq = self.augments[i](seq)
                if INSERTION not in chosen:  # RobustModel._pad_end: random bases at the end
                    pad = torch.eye(4)[torch.randint(0, 4, (self.insert_max,))].T.unsqueeze(0)
                    seq = torch.cat([seq, pad], dim=2)
                out.append(seq)
        return torch.cat(out).to(device=x.device, dtype=x.dtype)


def _handcrafted(cfg) -> Augment:
    return EvoAugDNA()


def dna_evoaug() -> Modality:
    """The DNA modality with EvoAug's augmentations as its hand-designed baseline."""
    return dataclasses.replace(DNA, name=NAME, build_handcrafted=_handcrafted)
