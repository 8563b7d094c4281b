"""BiMamba: a Mamba over the sequence plus one over the reversed sequence, added (Caduceus, Schiff et al., 2024).

Follows ``BiMambaWrapper`` of ``caduceus/modeling_caduceus.py`` (kuleshov-group/caduceus) with
``bidirectional_strategy="add"``: ``out = mamba_fwd(x) + flip(mamba_rev(flip(x)))``. With
``weight_tie=True`` (Caduceus' default, ``bidirectional_weight_tie``) the two directions share ``in_proj`` and
``out_proj`` (most of the parameters) and keep their own convolution, ``x_proj``, ``dt_proj``, ``A_log`` and
``D``. Here the reverse direction is built without projections and borrows the forward ones, so the shared
weights exist once in the state dict (the reference assigns the same Parameter to both, so its state dict
holds them twice; :data:`derf_zoo.models.caduceus.CADUCEUS_LAYOUT` ties both copies to ours).
"""

from __future__ import annotations

from torch import Tensor, nn

from derf_zoo.layers.mixers import register_mixer
from derf_zoo.models.caduceus.mamba import Mamba
from derf_zoo.models.caduceus.selective_scan import DEFAULT_CHUNK_SIZE

__all__ = ["BiMamba"]


@register_mixer("bimamba")
class BiMamba(nn.Module):
    """Bidirectional Mamba mixer ``(B, L, dim) -> (B, L, dim)``, registered as mixer ``"bimamba"``.

    Args:
        dim: token width.
        d_state: SSM state size.
        d_conv: causal convolution width.
        expand: inner width over ``dim``.
        dt_rank: step-size rank, or ``"auto"``.
        weight_tie: share ``in_proj``/``out_proj`` between the directions (Caduceus' default).
        bias: bias on the projections.
        conv_bias: bias on the convolutions.
        chunk_size: chunk length of the parallel scan.
        scan: ``"auto"``, ``"chunked"`` or ``"reference"`` (see :class:`~derf_zoo.models.caduceus.mamba.Mamba`).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: str = "auto",
        weight_tie: bool = True,
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        kwargs = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "dt_rank": dt_rank, "bias": bias,
                  "conv_bias": conv_bias, "chunk_size": chunk_size, "scan": scan}  # fmt: skip
        self.weight_tie = weight_tie
        self.mamba_fwd = Mamba(dim, **kwargs)
        self.mamba_rev = Mamba(dim, projections=not weight_tie, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if not self.weight_tie:
            return self.mamba_fwd(x) + self.mamba_rev(x.flip(1)).flip(1)
        # in_proj acts per token, so in_proj(flip(x)) = flip(in_proj(x)): one projection serves both directions.
        xz = self.mamba_fwd.in_proj(x)
        y_fwd = self.mamba_fwd.mix(xz)
        y_rev = self.mamba_rev.mix(xz.flip(1)).flip(1)
        out_proj = self.mamba_fwd.out_proj
        if out_proj.bias is None:  # linear: out_proj(a) + out_proj(b) = out_proj(a + b), one matmul
            return out_proj(y_fwd + y_rev)
        return out_proj(y_fwd) + out_proj(y_rev)
