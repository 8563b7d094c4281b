"""Reverse-complement parameter sharing (RCPS) for DNA models, after ``caduceus/modeling_rcps.py``
(kuleshov-group/caduceus; Zhou et al., 2022, "Towards a Better Understanding of Reverse-Complement Equivariance").

The hidden state has two halves of ``C/2`` channels: the forward strand's and the reverse complement's, the
latter stored flipped in length and channels. Reverse-complementing a sequence then acts on the hidden state as
``flip(dims=(L, C))``, and every module below commutes with that flip, so the whole model is RC-equivariant:
the same weights read both strands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RCPSEmbedding", "RCPSWrapper", "rcps_lm_logits"]


def _reverse_complement_with_map(input_ids: Tensor, complement_map: Tensor) -> Tensor:
    """Token ids (B, L) -> ids of the reverse complement: complemented and reversed along L."""
    return complement_map[input_ids.flip(-1)]


def _halves(x: Tensor, owner: str) -> int:
    channels = x.shape[-1]
    if channels % 2:
        raise ValueError(f"{owner}: an RC-equivariant hidden state has a forward and a reverse-complement half, so "
                         f"its width must be even; got width {channels}.")  # fmt: skip
    return channels // 2


class RCPSEmbedding(nn.Module):
    """``ids -> [emb(ids), flip(emb(rc(ids)))]``: width ``2 * d_model`` from a ``d_model`` embedding table.

    Args:
        vocab_size: rows of the table.
        d_model: width of one half.
        complement_map: (vocab_size,) long tensor, the complement of each token id (an involution).
    """

    def __init__(self, vocab_size: int, d_model: int, complement_map: Tensor) -> None:
        super().__init__()
        if complement_map.shape != (vocab_size,):
            raise ValueError(f"RCPSEmbedding: complement_map must have one entry per token ({vocab_size}), got "
                             f"shape {tuple(complement_map.shape)}.")  # fmt: skip
        self.register_buffer("complement_map", complement_map.long().clone())
        self.embedding = nn.Embedding(vocab_size, d_model)

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight

    def forward(self, input_ids: Tensor) -> Tensor:
        fwd = self.embedding(input_ids)
        rc = self.embedding(_reverse_complement_with_map(input_ids, self.complement_map)).flip(dims=(-2, -1))
        return torch.cat([fwd, rc], dim=-1)


class RCPSWrapper(nn.Module):
    """Apply ``submodule`` (width ``C/2``) to the forward half and to the un-flipped reverse-complement half.

    ``out = [f(x_fwd), flip(f(flip(x_rc)))]`` with flips over length and channels; used for every mixer and
    every norm of Caduceus-PS (the reference's ``RCPSWrapper`` and, without the fused add, ``RCPSAddNormWrapper``).
    """

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        half = _halves(x, "RCPSWrapper")
        fwd = self.submodule(x[..., :half], **kwargs)
        rc = self.submodule(x[..., half:].flip(dims=(-2, -1)), **kwargs)
        return torch.cat([fwd, rc.flip(dims=(-2, -1))], dim=-1)


def rcps_lm_logits(hidden: Tensor, weight: Tensor, complement_map: Tensor) -> Tensor:
    """The RCPS LM head (the reference's ``RCPSLMHead``, tied to the embedding ``weight`` (V, C/2)).

    ``logits = x_fwd W^T + flip_C(x_rc) W[complement]^T``: the reverse-complement half votes for the complement
    of each token, so ``logits(rc(ids)) = flip_L(logits(ids))[..., complement]``.
    """
    half = _halves(hidden, "RCPS LM head")
    if weight.shape[1] != half:
        raise ValueError(f"RCPS LM head: the hidden half width {half} does not match the embedding width "
                         f"{weight.shape[1]}.")  # fmt: skip
    return F.linear(hidden[..., :half], weight) + F.linear(hidden[..., half:].flip(-1), weight[complement_map])
