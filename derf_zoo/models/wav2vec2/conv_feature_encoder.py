"""wav2vec 2.0's convolutional feature encoder: raw 16 kHz audio -> 20 ms frames.

Two modes, as fairseq's ``ConvFeatureExtractionModel`` and transformers' ``Wav2Vec2FeatureEncoder``:

- ``"group"`` (fairseq ``extractor_mode=default``, Base): one ``GroupNorm(C, C)`` after the first conv only
  (per-channel normalisation over time), convs without bias;
- ``"layer"`` (fairseq ``layer_norm``, Large): a LayerNorm over channels after every conv, convs with bias.

These norms normalise the data, not the residual stream: they are *not* norm-slot sites (the Derf paper keeps
them, its App. C), so a model's ``norm=`` never changes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["ConvFeatureEncoder", "conv_output_lengths"]

ExtractorMode = Literal["group", "layer"]


def conv_output_lengths(lengths: Tensor, kernels: Sequence[int], strides: Sequence[int]) -> Tensor:
    """Frames produced from ``lengths`` samples (no padding convolutions: ``floor((L - k) / s) + 1`` per layer)."""
    for k, s in zip(kernels, strides):
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
    return lengths


class _ConvLayer(nn.Module):
    """conv -> optional norm -> GELU; parameter names ``conv`` and ``norm``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        if norm == "group":
            self.norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(c_out, elementwise_affine=True)
        else:
            self.norm = None
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm is not None:
            x = self.norm(x)
        return self.act(x)


class ConvFeatureEncoder(nn.Module):
    """Stack of 1-D convolutions over the waveform: ``(B, T_samples) -> (B, C, T_frames)``.

    Args:
        conv_dim: output channels per layer (wav2vec 2.0: 7 x 512).
        conv_kernel: kernel per layer (10, 3, 3, 3, 3, 2, 2).
        conv_stride: stride per layer (5, 2, 2, 2, 2, 2, 2): 320 samples per frame.
        mode: ``"group"`` or ``"layer"`` (see the module docstring).
        conv_bias: bias on the convs (fairseq: False for Base, True for Large); None picks the mode's default.
    """

    def __init__(
        self,
        conv_dim: Sequence[int] = (512,) * 7,
        conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        mode: ExtractorMode = "group",
        conv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("group", "layer"):
            raise ValueError(f"extractor mode must be 'group' or 'layer', got {mode!r}.")
        if not (len(conv_dim) == len(conv_kernel) == len(conv_stride)) or not conv_dim:
            raise ValueError(f"conv_dim, conv_kernel and conv_stride need the same non-zero length, got "
                             f"{len(conv_dim)}, {len(conv_kernel)}, {len(conv_stride)}.")  # fmt: skip
        bias = (mode == "layer") if conv_bias is None else conv_bias
        self.kernels = tuple(int(k) for k in conv_kernel)
        self.strides = tuple(int(s) for s in conv_stride)
        self.out_dim = int(conv_dim[-1])
        layers = []
        c_in = 1
        for i, (c, k, s) in enumerate(zip(conv_dim, self.kernels, self.strides)):
            norm = mode if mode == "layer" or i == 0 else None
            layers.append(_ConvLayer(c_in, int(c), k, s, bias, norm))
            c_in = int(c)
        self.conv_layers = nn.ModuleList(layers)

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees (400 for wav2vec 2.0): the shortest input that yields a frame."""
        field = 1
        for k, s in zip(reversed(self.kernels), reversed(self.strides)):
            field = (field - 1) * s + k
        return field

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of inputs of ``lengths`` samples."""
        return conv_output_lengths(lengths, self.kernels, self.strides)

    @torch.no_grad()
    def init_weights(self) -> None:
        """fairseq: kaiming-normal conv weights (norms keep weight 1, bias 0)."""
        for layer in self.conv_layers:
            nn.init.kaiming_normal_(layer.conv.weight)
            if layer.conv.bias is not None:
                nn.init.zeros_(layer.conv.bias)
            if layer.norm is not None:
                nn.init.ones_(layer.norm.weight)
                nn.init.zeros_(layer.norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"The feature encoder takes waveforms of shape (batch, samples), got {tuple(x.shape)}.")
        if x.shape[1] < self.receptive_field:
            raise ValueError(f"Audio of {x.shape[1]} samples is shorter than the encoder's receptive field "
                             f"({self.receptive_field} samples): it yields no frame.")  # fmt: skip
        x = x[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x
