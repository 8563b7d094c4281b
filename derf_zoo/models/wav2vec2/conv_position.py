"""wav2vec 2.0's convolutional relative position embedding (fairseq ``pos_conv``, HF ``pos_conv_embed``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ConvPositionEmbedding"]


class ConvPositionEmbedding(nn.Module):
    """Grouped conv over time with weight norm (``dim=2``), "same" padding and GELU: ``(B, T, D) -> (B, T, D)``.

    The weight is stored as ``conv.parametrizations.weight.original0`` (g) and ``original1`` (v), as
    transformers stores it; older checkpoints' ``weight_g``/``weight_v`` map onto these.

    Args:
        dim: model width.
        kernel: kernel size (128); an even kernel drops the last output frame (fairseq's ``SamePad``).
        groups: conv groups (16).
        dropout: fairseq scales the init std by ``1 - dropout``.
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % groups:
            raise ValueError(f"ConvPositionEmbedding: width {dim} is not divisible by groups {groups}.")
        self.kernel = kernel
        self.dropout = dropout
        self.conv = weight_norm(nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups), name="weight", dim=2)
        self.remove = 1 if kernel % 2 == 0 else 0
        self.act = nn.GELU()

    @torch.no_grad()
    def init_weights(self) -> None:
        """fairseq: normal(0, sqrt(4 (1 - dropout) / (kernel * dim))) weight, zero bias, then weight norm."""
        conv = self.conv
        dim = conv.in_channels
        std = math.sqrt(4 * (1.0 - self.dropout) / (self.kernel * dim))
        v = torch.empty_like(conv.parametrizations.weight.original1).normal_(0, std)
        conv.parametrizations.weight.original1.copy_(v)
        conv.parametrizations.weight.original0.copy_(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
        nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.transpose(1, 2))
        if self.remove:
            x = x[:, :, : -self.remove]
        return self.act(x).transpose(1, 2)
