"""Hand-designed DNA augmentations in the style of EvoAug: a baseline, not part of DiffAug.

DiffAug's positives are domain-knowledge-free; these are the domain-knowledge ones it is
compared against (``--augment handcrafted``), with the same encoder, loss and budget.
"""

from __future__ import annotations

import torch


class HandcraftedDNA:
    """Random insertion/deletion, circular shift, substitutions and reverse complement.

    Applied to every sequence of a batch, each draw independent per sequence, in this order:

    1. with probability ``indel_prob``, an insertion or a deletion (equally likely) of a length
       drawn uniformly from ``indel_size`` (inclusive). A deletion removes ``d`` bases starting
       at a uniform position in ``[0, L - d]`` and pads ``d // 2`` random bases before the
       sequence and the rest after it; an insertion puts ``s`` random bases at a uniform
       position in ``[0, L]`` and trims ``s // 2`` bases from the start and the rest from the
       end. Length stays ``L`` and the sequence's centre stays in place (DHS and ChIP peaks
       are centred on their summit), as with EvoAug's padding on both sides.
    2. a circular shift (``torch.roll``) by a uniform integer in ``[-max_shift, max_shift]``.
    3. substitutions: a rate ``r ~ U(mutation_rate)`` per sequence, then exactly
       ``round(r * n_called)`` distinct called positions (non-zero rows) each changed to one of
       the three other bases, uniformly. ``r`` is the fraction of bases that really change.
    4. reverse complement with probability ``rc_prob``.

    Output is valid one-hot in the input's dtype and device. An all-zero input row (N,
    padding) stays all zero, moved with its neighbours by the shift, indel or reverse
    complement; it is never mutated. Random bases (indel padding and inserts) are uniform over
    ACGT. Set ``mutation_rate=(0, 0)``, ``rc_prob=0``, ``max_shift=0`` or ``indel_prob=0`` to
    switch an augmentation off.

    Differences from EvoAug 1.0.6 (``evoaug.augment``), which this baseline must not be weaker
    than:

    - EvoAug's ``RobustModel`` applies a random subset of up to ``max_augs_per_seq`` of its
      augmentations per sequence; here every augmentation is applied to every sequence (each
      with its own probability), which is at least as strong as EvoAug with all of them on.
    - EvoAug's ``RandomMutation`` resamples ``round(mutate_frac / 0.75 * L)`` positions to a
      uniform base (so about ``mutate_frac`` really change, a fixed count per batch); here the
      changed fraction itself is drawn per sequence from ``mutation_rate``.
    - EvoAug's ``RandomInsertion`` lengthens every sequence to ``L + insert_max`` (and pads the
      other sequences, including at evaluation, to match); here the length stays ``L``, so the
      encoder sees the same shapes with or without augmentation.
    - EvoAug's deletion start is uniform in ``[0, L - delete_max]``; here in ``[0, L - d]``.
    - EvoAug's shift draws the magnitude in ``[shift_min, shift_max]`` and a random sign; here
      uniform in ``[-max_shift, max_shift]`` (0 included).
    - EvoAug's ``RandomInversion`` (reverse-complementing a segment) and ``RandomNoise``
      (Gaussian noise on the one-hot) are not implemented.
    - All randomness here comes from ``generator`` (EvoAug uses the global RNGs), and the work
      is vectorised over the batch (EvoAug loops over sequences).

    Args:
        mutation_rate: ``(lo, hi)`` range of the per-sequence substitution rate.
        rc_prob: probability of reverse-complementing a sequence.
        max_shift: largest circular shift, in bases.
        indel_prob: probability of an insertion or deletion.
        indel_size: ``(lo, hi)`` inclusive range of the indel length, in bases.

    Examples:
        >>> aug = HandcraftedDNA()
        >>> x = torch.eye(4)[torch.randint(0, 4, (8, 200))].transpose(1, 2)  # (8, 4, 200)
        >>> aug(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 4, 200])
    """

    def __init__(self, mutation_rate: tuple[float, float] = (0.05, 0.10), rc_prob: float = 0.5,
                 max_shift: int = 10, indel_prob: float = 0.5,
                 indel_size: tuple[int, int] = (1, 20)) -> None:
        lo, hi = mutation_rate
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"mutation_rate must satisfy 0 <= lo <= hi <= 1, got {mutation_rate}")
        if not 0.0 <= rc_prob <= 1.0 or not 0.0 <= indel_prob <= 1.0:
            raise ValueError("rc_prob and indel_prob must be probabilities")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        if not 1 <= indel_size[0] <= indel_size[1]:
            raise ValueError(f"indel_size must satisfy 1 <= lo <= hi, got {indel_size}")
        self.mutation_rate = (float(lo), float(hi))
        self.rc_prob = float(rc_prob)
        self.max_shift = int(max_shift)
        self.indel_prob = float(indel_prob)
        self.indel_size = (int(indel_size[0]), int(indel_size[1]))

    def __repr__(self) -> str:
        return (f"HandcraftedDNA(mutation_rate={self.mutation_rate}, rc_prob={self.rc_prob}, "
                f"max_shift={self.max_shift}, indel_prob={self.indel_prob}, "
                f"indel_size={self.indel_size})")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: ``(B, 4, L)`` float one-hot (all-zero columns allowed).
            generator: source of all randomness; draws happen on its device (CPU when
                ``None``, from torch's default generator) and move to ``x``'s device.

        Returns:
            ``(B, 4, L)`` one-hot, same dtype and device as ``x``.
        """
        if x.dim() != 3 or x.shape[1] != 4:
            raise ValueError(f"x must be (B, 4, L), got {tuple(x.shape)}")
        b, _, length = x.shape
        if b == 0 or length == 0:
            return x.clone()
        draw = _Draw(generator, x.device)
        pos = torch.arange(length, device=x.device).expand(b, length)  # source column per output
        src = x
        if self.indel_prob > 0 and length > 1:
            src, pos = self._indel_index(x, draw)
        if self.max_shift > 0:
            shift = draw.randint(-self.max_shift, self.max_shift + 1, (b,))
            pos = pos.gather(1, (torch.arange(length, device=x.device) - shift[:, None]) % length)
        out = src.gather(2, pos.unsqueeze(1).expand(b, 4, length))
        if self.mutation_rate[1] > 0:
            out = self._mutate(out, draw)
        if self.rc_prob > 0:
            flip = draw.rand((b,)) < self.rc_prob
            out = torch.where(flip[:, None, None], out.flip(dims=(1, 2)), out)
        return out

    def _indel_index(self, x: torch.Tensor, draw: _Draw) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ``[x | random bases]`` and, per output column, the column to take from it."""
        b, _, length = x.shape
        lo, hi = self.indel_size[0], min(self.indel_size[1], length - 1)
        lo = min(lo, hi)
        size_max = hi
        apply = draw.rand((b,)) < self.indel_prob
        is_del = draw.rand((b,)) < 0.5
        size = draw.randint(lo, hi + 1, (b,))
        where = (draw.rand((b,)) * (length + 1 - torch.where(is_del, size, 0))).long()
        rand_bases = draw.randint(0, 4, (b, size_max))
        rand_hot = torch.nn.functional.one_hot(rand_bases, 4).transpose(1, 2).to(x.dtype)
        src = torch.cat([x, rand_hot], dim=2)  # (B, 4, L + size_max)

        j = torch.arange(length, device=x.device).expand(b, length)
        size_, where_ = size[:, None], where[:, None]
        # deletion of `size` at `where`, size // 2 random bases in front, the rest behind
        front = size_ // 2
        del_pos = torch.where(j < front, length + j,
                  torch.where(j < front + where_, j - front,
                  torch.where(j < length - (size_ - front), j - front + size_,
                              length + j - length + size_)))
        # insertion of `size` random bases at `where`, trimmed size // 2 in front, rest behind
        u = j + size_ // 2
        ins_pos = torch.where(u < where_, u,
                  torch.where(u < where_ + size_, length + u - where_, u - size_))
        pos = torch.where(is_del[:, None], del_pos, ins_pos)
        pos = torch.where(apply[:, None], pos, j)
        return src, pos

    def _mutate(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        b, _, length = x.shape
        lo, hi = self.mutation_rate
        rate = lo + (hi - lo) * draw.rand((b,))
        called = x.sum(dim=1) > 0  # (B, L)
        n_mut = torch.round(rate * called.sum(dim=1)).long()  # (B,)
        keys = draw.rand((b, length)).masked_fill(~called, 2.0)  # uncalled rows never chosen
        n_top = int(n_mut.max())
        mutate = torch.zeros((b, length), dtype=torch.bool, device=x.device)
        if n_top > 0:  # the n_mut smallest keys of each row
            cols = keys.topk(n_top, dim=1, largest=False, sorted=True).indices
            chosen = torch.arange(n_top, device=x.device)[None, :] < n_mut[:, None]
            mutate.scatter_(1, cols, chosen)
        mutate &= called
        base = (x[:, 1] + 2 * x[:, 2] + 3 * x[:, 3]).round().long()  # argmax is slow on dim 1
        new_base = (base + draw.randint(1, 4, (b, length))) % 4
        new_hot = torch.nn.functional.one_hot(new_base, 4).transpose(1, 2).to(x.dtype)
        return torch.where(mutate[:, None, :], new_hot, x)


class _Draw:
    """Random draws from one generator, on its device, moved to the data's device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.gen = generator
        self.gen_device = generator.device if generator is not None else torch.device("cpu")
        self.device = device

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.gen, device=self.gen_device).to(self.device)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.gen,
                             device=self.gen_device).to(self.device)
