"""Contrastive losses: the paper's soft Student-t loss (DMT-EV style) and InfoNCE / NT-Xent.

Both take a batch of ``B`` original views and their ``B`` positives, row ``i`` of one paired with
row ``i`` of the other, and return a scalar. With ``gather=True`` under an initialised
``torch.distributed`` process group, the candidates (columns of the similarity matrices) come
from the global batch through :func:`gather_with_grad`, while the queries (rows) stay local; every
rank must then pass the same ``B``. The mean of the per-rank losses equals the loss of one
process on the concatenated batch, and after DDP averages the parameter gradients over ranks they
equal that process's gradients too (tested with two gloo processes).

Examples:
    >>> z = encoder(x)                      # (B, 128) embeddings of the original views
    >>> y, y_aug = head(z), head(encoder(x_aug))
    >>> loss = soft_contrastive_loss(z, y, y_aug)
    >>> loss = info_nce_loss(y, y_aug, temperature=0.2)
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "gather_with_grad",
    "info_nce_loss",
    "soft_contrastive_loss",
    "student_t_similarity",
    "squared_distances",
]


# --------------------------------------------------------------------------------------------
# distributed gather


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; in backward, sum the gradients of every rank and keep our slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank = dist.get_rank()
        ctx.batch = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.contiguous()
        # Every rank's loss depends on every rank's rows: the gradient for our rows is the sum of
        # what each rank's loss sends them.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` ``(B, ...)`` from every rank along dim 0, keeping the autograd graph.

    Returns ``(world_size * B, ...)`` in rank order, so this rank's rows start at ``rank * B``.
    The backward pass all-reduces (sums) the incoming gradient and returns this rank's slice: the
    gradient of the sum of all ranks' losses with respect to the local rows. Since DDP then
    divides the parameter gradients by the world size, training follows the gradient of the mean
    per-rank loss, which is the loss on the global batch.

    Every rank must pass the same shape (use ``drop_last`` or a ``DistributedSampler``, whose
    padding gives every rank the same number of samples). Without an initialised process group
    of more than one process this is the identity.
    """
    if not _distributed():
        return x
    return _GatherWithGrad.apply(x)


def _rank_offset(batch: int, gather: bool) -> int:
    """Row offset of this rank's samples inside the gathered candidates."""
    return dist.get_rank() * batch if gather and _distributed() else 0


# --------------------------------------------------------------------------------------------
# soft contrastive loss (DMT-EV / DiffAug)


def _upcast(x: Tensor) -> Tensor:
    """float16/bfloat16 (autocast) -> float32; float32 and float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``(M, N)`` between the rows of ``a`` ``(M, D)`` and ``b`` ``(N, D)``.

    Uses ``|a|^2 + |b|^2 - 2 a.b`` after centring both on the mean of ``b`` (distances are
    translation invariant; centring reduces the cancellation error of the expansion), clamped at 0.
    Differentiable everywhere (no square root).
    """
    centre = b.detach().mean(dim=0, keepdim=True)
    a = a - centre
    b = b - centre
    d = (a * a).sum(dim=1, keepdim=True) + (b * b).sum(dim=1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min(0.0)


def _log_norm_const(nu: float) -> float:
    """log of 2*pi*C(nu)^2, C(nu) = Gamma((nu+1)/2) / (sqrt(nu*pi) Gamma(nu/2)), in float64."""
    if not nu > 0:
        raise ValueError(f"nu must be > 0, got {nu}")
    log_c = math.lgamma((nu + 1.0) / 2.0) - math.lgamma(nu / 2.0) - 0.5 * math.log(nu * math.pi)
    return math.log(2.0 * math.pi) + 2.0 * log_c


def student_t_similarity(d: Tensor, nu: float) -> Tensor:
    """S_nu(d) = 2*pi*C(nu)^2 * (1 + d/nu)^-(nu+1) on squared distances ``d >= 0``.

    Evaluated in log space (``lgamma``, ``log1p``). ``C(nu)`` is the Student-t density at 0, which
    increases with ``nu`` towards the normal density ``1/sqrt(2*pi)``, so ``2*pi*C(nu)^2 < 1`` for
    every finite ``nu`` (0.995 at nu = 100, 0.0155 at nu = 0.01) and ``S`` lies in ``(0, 1)`` as a
    Bernoulli probability must. The result is still clamped to ``[0, 1]`` to guard against
    rounding, and because the loss takes ``log(1 - S)``.
    """
    log_s = _log_norm_const(nu) - (nu + 1.0) * torch.log1p(d / nu)
    return log_s.exp().clamp(0.0, 1.0)


def soft_contrastive_loss(
    z: Tensor,
    y: Tensor,
    y_aug: Tensor,
    nu_z: float = 100.0,
    nu_y: float = 0.01,
    eps: float = 1e-5,
    *,
    detach_target: bool = True,
    gather: bool = False,
) -> Tensor:
    """The paper's soft contrastive loss (DMT-EV style), a scalar.

    Args:
        z: ``(B, D)`` encoder embeddings of the original views; they define the soft target.
        y: ``(B, P)`` projection-head outputs of the original views.
        y_aug: ``(B, P)`` projection-head outputs of the positives, row ``i`` paired with ``y[i]``.
        nu_z: Student-t degrees of freedom of the target similarity (100: nearly Gaussian).
        nu_y: degrees of freedom of the head similarity (0.01: very heavy tailed).
        eps: added inside both logarithms of the cross-entropy, as in the reference code.
        detach_target: stop the gradient through ``P`` (default). See below.
        gather: take the candidates (columns) from every rank (:func:`gather_with_grad`).

    With ``S_nu`` from :func:`student_t_similarity` on squared Euclidean distances,
    ``P_ij = S_nu_z(|z_i - z_j|^2)`` over the original views and
    ``Q_ij = S_nu_y(|y_i - y_aug_j|^2)`` between original and augmented views, the loss is the
    mean over the ``B x B`` pairs of ``-[P log(Q + eps) + (1 - P) log(1 - Q + eps)]``.

    Choices, checked against the published DiffAug / DMT-EV code (``zangzelin/code_diffaug``,
    ``LossManifold`` and ``_TwowaydivergenceLoss``):

    * Diagonal: the reference clamps the squared distances at 1e-12 and keeps the diagonal, so
      ``P_ii = S_nu_z(0) = 2*pi*C(nu_z)^2`` (0.995 for nu_z = 100): the pair (x_i, x'_i) is the
      positive. Here ``P_ii`` is computed from a distance of exactly 0, giving the same value;
      the diagonal (and, with ``gather``, the column ``rank * B + i``) stays in the mean.
    * No normalisation: like the reference, P and Q are raw similarities used as Bernoulli
      probabilities, not row-normalised as in t-SNE; the mean runs over all ``B x B`` pairs.
    * Detach: the reference lets gradients flow through ``P``. We detach it by default. ``P``
      is the target (in DMT-EV it comes from fixed input data); with a gradient through it the
      encoder can lower the loss by spreading the unnormalised ``z`` apart, driving every
      off-diagonal ``P_ij`` to 0 and turning the soft negatives into hard ones, which is the
      opposite of what the loss is for. ``detach_target=False`` reproduces the published
      behaviour. The encoder still learns, through ``y = head(z)``.
    * Numerics: distances and similarities are computed in float32 at least (float64 inputs
      stay float64), in log space; see :func:`student_t_similarity` for why ``P, Q`` stay in
      ``[0, 1]``.
    """
    if y.shape != y_aug.shape or z.shape[0] != y.shape[0]:
        raise ValueError(f"shape mismatch: z {tuple(z.shape)}, y {tuple(y.shape)}, "
                         f"y_aug {tuple(y_aug.shape)}")
    z, y, y_aug = _upcast(z), _upcast(y), _upcast(y_aug)
    batch = z.shape[0]
    offset = _rank_offset(batch, gather)
    z_target = z.detach() if detach_target else z
    z_all = gather_with_grad(z_target) if gather else z_target
    y_aug_all = gather_with_grad(y_aug) if gather else y_aug

    rows = torch.arange(batch, device=z.device)
    d_p = squared_distances(z_target, z_all)
    # The self-distance is 0 by definition; the expansion leaves rounding error there.
    d_p = d_p.index_put((rows, rows + offset), torch.zeros((), dtype=d_p.dtype, device=d_p.device))
    p = student_t_similarity(d_p, nu_z)
    q = student_t_similarity(squared_distances(y, y_aug_all), nu_y)
    bce = -(p * torch.log(q + eps) + (1.0 - p) * torch.log(1.0 - q + eps))
    return bce.mean()


# --------------------------------------------------------------------------------------------
# InfoNCE / NT-Xent


def info_nce_loss(a: Tensor, b: Tensor, temperature: float = 0.2, *, gather: bool = False) -> Tensor:
    """Symmetric NT-Xent (SimCLR) loss, a scalar.

    Args:
        a: ``(B, P)`` projections of the first views.
        b: ``(B, P)`` projections of the second views, row ``i`` the positive of ``a[i]``.
        temperature: softmax temperature on cosine similarities.
        gather: take the candidates from every rank (:func:`gather_with_grad`).

    Each of the ``2B`` views is a query against the other ``2B - 1`` (itself excluded): its
    partner is the positive, the remaining ``2B - 2`` are negatives; the loss is the mean
    cross-entropy over the ``2B`` queries. With ``gather`` the candidates are the ``2 * W * B``
    views of the global batch and the positive of local row ``i`` sits at ``rank * B + i``.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both be (B, P), got {tuple(a.shape)} and {tuple(b.shape)}")
    a = F.normalize(_upcast(a), dim=1)
    b = F.normalize(_upcast(b), dim=1)
    batch = a.shape[0]
    offset = _rank_offset(batch, gather)
    a_all = gather_with_grad(a) if gather else a
    b_all = gather_with_grad(b) if gather else b
    n_all = a_all.shape[0]

    queries = torch.cat([a, b], dim=0)  # (2B, P)
    candidates = torch.cat([a_all, b_all], dim=0)  # (2N, P)
    logits = queries @ candidates.T / temperature  # (2B, 2N)
    idx = torch.arange(batch, device=a.device) + offset
    self_col = torch.cat([idx, idx + n_all])
    pos_col = torch.cat([idx + n_all, idx])
    rows = torch.arange(2 * batch, device=a.device)
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), device=a.device,
                                                             dtype=logits.dtype))
    return F.cross_entropy(logits, pos_col)
