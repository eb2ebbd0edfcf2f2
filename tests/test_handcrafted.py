"""EvoAug-style hand-designed DNA augmentations (the baseline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffaug_genomics.alphabet import decode, reverse_complement
from diffaug_genomics.positives.handcrafted import HandcraftedDNA

OFF = {"mutation_rate": (0.0, 0.0), "rc_prob": 0.0, "max_shift": 0, "indel_prob": 0.0}


def _batch(b: int, length: int, seed: int = 0, n_frac: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.eye(4)[torch.randint(0, 4, (b, length), generator=g)].transpose(1, 2).contiguous()
    if n_frac:
        x[(torch.rand(b, length, generator=g) < n_frac).unsqueeze(1).expand_as(x)] = 0
    return x


def _strings(x: torch.Tensor) -> list[str]:
    return decode(x.transpose(1, 2).numpy())


def test_defaults_give_one_hot_of_same_shape() -> None:
    x = _batch(64, 120)
    y = HandcraftedDNA()(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert ((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all()
    assert not torch.equal(x, y)


def test_mutation_fraction_within_range() -> None:
    x = _batch(400, 200, n_frac=0.05)
    aug = HandcraftedDNA(**{**OFF, "mutation_rate": (0.05, 0.10)})
    y = aug(x, torch.Generator().manual_seed(1))
    called = x.sum(1) > 0
    assert torch.equal(y.sum(1) > 0, called)  # N rows stay N, bases stay bases
    changed = (y != x).any(1)
    frac = changed.sum(1) / called.sum(1)
    assert (frac >= 0.05 - 1 / 190).all() and (frac <= 0.10 + 1 / 190).all()
    assert abs(frac.mean().item() - 0.075) < 0.005  # rate ~ U(0.05, 0.10) per sequence
    assert frac.std() > 0.01  # the rate varies between sequences
    # the new base is uniform over the three others
    before, after = x.argmax(1)[changed], y.argmax(1)[changed]
    step = np.bincount(((after - before) % 4).numpy(), minlength=4)
    assert step[0] == 0 and step[1:].min() > 0.28 * step.sum()


def test_reverse_complement_when_forced() -> None:
    x = _batch(8, 50, n_frac=0.1)
    y = HandcraftedDNA(**{**OFF, "rc_prob": 1.0})(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, x.flip(dims=(1, 2)))
    expect = reverse_complement(x.transpose(1, 2).numpy())
    np.testing.assert_array_equal(y.transpose(1, 2).numpy(), expect)
    s, t = _strings(x)[0], _strings(y)[0]
    assert t == s[::-1].translate(str.maketrans("ACGTN", "TGCAN"))


def test_shift_is_a_roll_within_range_when_forced() -> None:
    x = _batch(200, 40, n_frac=0.1)
    y = HandcraftedDNA(**{**OFF, "max_shift": 3})(x, torch.Generator().manual_seed(0))
    seen = set()
    for xi, yi in zip(x, y, strict=True):
        shifts = [s for s in range(-3, 4) if torch.equal(torch.roll(xi, s, -1), yi)]
        assert shifts, "output is not a roll of the input by at most 3"
        seen.update(shifts)
    assert seen == set(range(-3, 4))


def _explained_by_indel(src: str, out: str, lo: int, hi: int) -> bool:
    """Does ``out`` equal an insertion or deletion of ``src`` (random bases as wildcards)?"""
    length = len(src)

    def match(template: list[str | None]) -> bool:
        return all(t is None or t == o for t, o in zip(template, out, strict=True))

    for size in range(lo, hi + 1):
        front = size // 2
        for where in range(length - size + 1):  # deletion
            kept = list(src[:where] + src[where + size:])
            if match([None] * front + kept + [None] * (size - front)):
                return True
        for where in range(length + 1):  # insertion
            grown = list(src[:where]) + [None] * size + list(src[where:])
            if match(grown[front:front + length]):
                return True
    return False


def test_indels_keep_length_and_are_real_indels() -> None:
    x = _batch(30, 30, seed=3)
    aug = HandcraftedDNA(**{**OFF, "indel_prob": 1.0, "indel_size": (2, 5)})
    y = aug(x, torch.Generator().manual_seed(2))
    assert y.shape == x.shape and (y.sum(1) == 1).all()
    for s, t in zip(_strings(x), _strings(y), strict=True):
        assert s != t and _explained_by_indel(s, t, 2, 5)


def test_n_rows_survive_moves_and_are_never_mutated() -> None:
    x = _batch(50, 60, n_frac=0.1)
    y = HandcraftedDNA(indel_prob=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.equal((x.sum(1) == 0).sum(1), (y.sum(1) == 0).sum(1))


def test_deterministic_with_generator() -> None:
    x = _batch(32, 100)
    aug = HandcraftedDNA()
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_all_off_is_identity_and_bad_arguments_raise() -> None:
    x = _batch(4, 20)
    assert torch.equal(HandcraftedDNA(**OFF)(x), x)
    for kw in [{"mutation_rate": (0.2, 0.1)}, {"rc_prob": 1.5}, {"max_shift": -1},
               {"indel_size": (0, 3)}]:
        with pytest.raises(ValueError):
            HandcraftedDNA(**kw)
    with pytest.raises(ValueError):
        HandcraftedDNA()(torch.zeros(2, 20, 4))
