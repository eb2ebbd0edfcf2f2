"""A small CIFAR-style ResNet encoder for images: ``(N, C, H, W)`` -> ``(N, embed_dim)``.

CIFAR-style means the stem keeps the resolution (one 3x3 convolution, stride 1, no max-pool),
as small images (8x8 digits, 32x32 CIFAR) cannot afford ImageNet's 4x downsampling. Three
stages of ``n_blocks`` basic residual blocks each, with ``width``, ``2 * width`` and ``4 * width``
channels; the first block of stages 2 and 3 halves the resolution (stride 2) unless it is
already down to 1 pixel. Global average pooling and a linear layer give z.

Examples:
    >>> enc = ResNetEncoder(in_channels=1, width=32, n_blocks=1, embed_dim=64)
    >>> enc(torch.zeros(8, 1, 8, 8)).shape
    torch.Size([8, 64])
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResNetEncoder"]


class _BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """CIFAR-style ResNet (module docstring): ``(N, in_channels, H, W)`` -> ``(N, embed_dim)``.

    Args:
        in_channels: image channels (1 grayscale, 3 RGB).
        width: channels of the first stage (then doubled per stage).
        n_blocks: basic blocks per stage (three stages).
        embed_dim: size of z.
        image_size: ``(H, W)`` the encoder will see; a stage only downsamples while both sides
            stay >= 2 pixels.

    With width 32, one block per stage, 1 channel: 0.7 M parameters.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, n_blocks: int = 2,
                 embed_dim: int = 128, image_size: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        ch, h, w = width, *image_size
        for stage in range(3):
            out = width * 2 ** stage
            for b in range(n_blocks):
                stride = 2 if (stage > 0 and b == 0 and min(h, w) >= 4) else 1
                if stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
                blocks.append(_BasicBlock(ch, out, stride))
                ch = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(ch, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, in_channels, H, W)`` float -> ``z (N, embed_dim)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.blocks(self.stem(x))
        return self.fc(h.mean(dim=(2, 3)))
