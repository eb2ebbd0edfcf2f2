"""Batch normalisation over the global batch of every rank.

On CUDA this is :class:`torch.nn.SyncBatchNorm`. PyTorch's SyncBatchNorm refuses CPU tensors, so
CPU ranks (gloo) use :class:`GlobalBatchNorm`, which computes the same statistics with two
differentiable all-reduces per layer. Both keep the state-dict keys of the BatchNorm layers they
replace, so checkpoints load into the plain single-process models.

Gradients follow the convention of :func:`~diffaug_genomics.losses.gather_with_grad`: the
backward pass sums what every rank's loss sends through the shared statistics, and the
parameter gradients are then averaged over ranks, which is the gradient of the mean loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks in forward; the sum of the incoming gradients over ranks in backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over ``(N, C)`` or ``(N, C, L...)`` whose training statistics span all ranks.

    Every rank must pass the same number of rows. Statistics are two-pass (mean, then the mean
    squared deviation) over the ``W * N * L`` values of each channel; running statistics use
    the unbiased variance, as BatchNorm does. Outside training, or without an initialised
    process group of more than one process, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        view = [1, -1] + [1] * (input.dim() - 2)
        count = input.numel() // input.shape[1] * dist.get_world_size()
        mean = _AllReduceSum.apply(input.sum(dims)) / count
        centred = input - mean.view(view)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (count / max(count - 1, 1))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(view)
        if self.affine:
            out = out * self.weight.view(view) + self.bias.view(view)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by its global-batch version, in place.

    CUDA: :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`; CPU: :class:`GlobalBatchNorm`
    (parameters and buffers copied, dtype kept). Returns the module.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, GlobalBatchNorm):
            like = child.weight if child.weight is not None else child.running_mean
            dtype = like.dtype if like is not None else None
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats, device=device, dtype=dtype)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module
