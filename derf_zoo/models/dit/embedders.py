"""DiT's stems: the timestep and class-label embedders and fixed 2-D sin-cos positions.

Written after the official DiT (facebookresearch/DiT ``models.py``, itself after GLIDE and MAE); the parameter
names (``mlp.0``, ``mlp.2``, ``embedding_table``) are the official ones so its state dicts map one to one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LabelEmbedder", "TimestepEmbedder", "sincos_pos_embed_2d", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0) -> Tensor:
    """Sinusoidal embedding ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period ** (-i / (dim/2 - freq_shift))``.

    ``freq_shift=0`` is the official DiT (GLIDE) embedding; diffusers' ``Timesteps(flip_sin_to_cos=True,
    downscale_freq_shift=1)`` is the same formula with ``freq_shift=1``. An odd ``dim`` gets a zero last column.

    Args:
        t: (N,) timesteps, possibly fractional.
        dim: output width.
        max_period: the lowest frequency is about ``1 / max_period``.
        freq_shift: see above.
    """
    half = dim // 2
    if half - freq_shift <= 0:
        raise ValueError(f"timestep_embedding: dim {dim} is too small for freq_shift {freq_shift}.")
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - freq_shift)
    args = t[:, None].float() * torch.exp(exponent)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Scalar timesteps -> (N, hidden): a ``frequency_embedding_size``-wide sinusoid, then Linear, SiLU, Linear.

    Args:
        hidden_size: output width.
        frequency_embedding_size: width of the sinusoid (256 in DiT).
        freq_shift: 0 (official DiT) or 1 (diffusers' DiT); see :func:`timestep_embedding`.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, freq_shift: float = 0.0) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.freq_shift = freq_shift
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """DiT's init: normal(0.02) weights, zero biases (the family's xavier init does not apply here)."""
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, t: Tensor) -> Tensor:
        freq = timestep_embedding(t, self.frequency_embedding_size, freq_shift=self.freq_shift)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> (N, hidden), with label dropout for classifier-free guidance.

    With ``dropout_prob > 0`` the table has an extra row, index ``num_classes``: the null class. In training each
    label is replaced by it with probability ``dropout_prob``; ``force_drop_ids`` (1 = drop) does it on demand.

    Args:
        num_classes: classes.
        hidden_size: output width.
        dropout_prob: label-dropout probability (0.1 in DiT; 0 builds no null class).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {dropout_prob!r}.")
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.init_weights()

    @property
    def has_null_class(self) -> bool:
        return self.dropout_prob > 0

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.normal_(self.embedding_table.weight, std=0.02)

    def check_labels(self, labels: Tensor) -> None:
        """Refuse labels that are not integers in [0, num_classes) (the null class ``num_classes`` allowed too)."""
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
            raise ValueError(f"Class labels must be a 1-D integer tensor, got dtype {labels.dtype} and shape "
                             f"{tuple(labels.shape)}.")  # fmt: skip
        if torch.compiler.is_compiling():
            return  # a data-dependent check would break the graph; eager runs check
        top = self.num_classes if self.has_null_class else self.num_classes - 1
        # one host sync per batch (the embedding lookup would fail later anyway, on CUDA as an opaque device assert)
        if labels.numel() and bool(((labels < 0) | (labels > top)).any()):
            null = f" ({self.num_classes} is the null class)" if self.has_null_class else ""
            raise ValueError(f"Class labels must be in [0, {top}]{null}, got values from {int(labels.min())} to "
                             f"{int(labels.max())}.")  # fmt: skip

    def null_labels(self, n: int, device: torch.device | None = None) -> Tensor:
        """``n`` null-class labels (the unconditional input of classifier-free guidance)."""
        if not self.has_null_class:
            raise ValueError("This model has no null class (class_dropout_prob=0), so it cannot run unconditionally.")
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, labels: Tensor, train: bool, force_drop_ids: Tensor | None = None) -> Tensor:
        self.check_labels(labels)
        if (train and self.has_null_class) or force_drop_ids is not None:
            if force_drop_ids is None:
                drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            else:
                if not self.has_null_class:
                    raise ValueError("force_drop_ids needs a null class (class_dropout_prob > 0).")
                drop = force_drop_ids == 1
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> Tensor:
    """Fixed 2-D sin-cos positions (grid_size**2, dim), as MAE and the official DiT build them.

    The first half of the channels encodes the column index, the second half the row index (the official
    ``np.meshgrid(grid_w, grid_h)`` order); each half is ``[sin(pos * w_k), cos(pos * w_k)]`` with
    ``w_k = 10000 ** (-k / (dim/4))``. Computed in float64, returned in float32.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def one_axis(pos: Tensor) -> Tensor:
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()
