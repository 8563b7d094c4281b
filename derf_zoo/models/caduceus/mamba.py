"""The Mamba block (Gu & Dao, 2023) in pure PyTorch, after ``mamba_ssm/modules/mamba_simple.py`` (state-spaces/mamba).

``in_proj`` widens each token to ``2 * d_inner`` (x and the gate z); x goes through a causal depthwise
convolution and SiLU, ``x_proj`` makes the input-dependent step size (rank ``dt_rank``, widened by ``dt_proj``), B
and C; the selective scan mixes over time; ``out_proj`` narrows back. Parameter names and initialisation are
mamba_simple's, so its weights (and ``mambapy``'s, which uses the same names) load unchanged.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo.models.caduceus.selective_scan import (
    DEFAULT_CHUNK_SIZE,
    _check_chunk_size,
    selective_scan,
    selective_scan_bld,
    selective_scan_reference,
)

__all__ = ["Mamba", "ScanImpl", "resolve_dt_rank"]

ScanImpl = Literal["auto", "chunked", "reference"]
_SCANS = ("auto", "chunked", "reference")


def resolve_dt_rank(dt_rank: int | str | None, d_model: int) -> int:
    """``"auto"`` / None -> ``ceil(d_model / 16)`` (mamba_simple's rule); an int (or its text) stays."""
    if dt_rank is None or (isinstance(dt_rank, str) and dt_rank.strip().lower() == "auto"):
        return math.ceil(d_model / 16)
    if isinstance(dt_rank, str) and dt_rank.strip().isdigit():
        dt_rank = int(dt_rank)
    if isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank must be 'auto' or an integer >= 1, got {dt_rank!r}.")
    return dt_rank


class Mamba(nn.Module):
    """One Mamba mixer, ``(B, L, d_model) -> (B, L, d_model)``.

    Args:
        d_model: width of the tokens.
        d_state: state size N per channel.
        d_conv: width of the causal depthwise convolution.
        expand: ``d_inner = expand * d_model``.
        dt_rank: rank of the step-size projection, or ``"auto"`` (``ceil(d_model / 16)``).
        dt_min: smallest initial step size (log-uniform in [dt_min, dt_max]).
        dt_max: largest initial step size.
        dt_init: ``"random"`` (uniform ``dt_proj`` weights of std ``dt_rank**-0.5 * dt_scale``) or ``"constant"``.
        dt_scale: scale of that std.
        dt_init_floor: lower clamp of the initial step sizes.
        conv_bias: bias on the convolution.
        bias: bias on ``in_proj`` and ``out_proj``.
        projections: False builds the block without ``in_proj``/``out_proj`` (BiMamba's reverse direction,
            which borrows the forward direction's; then call :meth:`mix` on projected inputs).
        chunk_size: chunk length of the parallel scan (a power of two).
        scan: ``"auto"`` (mamba_ssm's CUDA kernel on a GPU when installed, else the chunked scan), ``"chunked"``
            or ``"reference"`` (the sequential loop; for tests and benchmarks).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str | None = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        projections: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scan: ScanImpl = "auto",
    ) -> None:
        super().__init__()
        for name, value, minimum in (("d_model", d_model, 1), ("d_state", d_state, 1), ("d_conv", d_conv, 1),
                                     ("expand", expand, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"Mamba: {name} must be an integer >= {minimum}, got {value!r}.")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}.")
        if scan not in _SCANS:
            raise ValueError(f"Mamba: scan must be one of {', '.join(_SCANS)}, got {scan!r}.")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.dt_min, self.dt_max, self.dt_init, self.dt_scale = dt_min, dt_max, dt_init, dt_scale
        self.dt_init_floor = dt_init_floor
        self.chunk_size = _check_chunk_size(chunk_size)
        self.scan = scan
        if projections:
            self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
            self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        else:
            self.in_proj = self.out_proj = None
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1,
                                bias=conv_bias)  # fmt: skip
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        # Like mamba_ssm: no weight decay on the SSM's A and D (Task's parameter groups skip 1-D ones; A_log is 2-D).
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """mamba_simple's init: PyTorch defaults for the projections and the convolution, ``dt_proj`` so that
        ``softplus(bias)`` is log-uniform in [dt_min, dt_max], ``A = -(1..d_state)`` (S4D-real), ``D = 1``.

        Having its own ``init_weights`` keeps a family's init (:func:`derf_zoo.layers.init_weights`) off it.
        """
        for layer in (self.in_proj, self.out_proj, self.conv1d, self.x_proj):
            if layer is not None:
                layer.reset_parameters()
        std = self.dt_rank**-0.5 * self.dt_scale
        if self.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_min, log_max = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand(self.d_inner) * (log_max - log_min) + log_min).clamp(min=self.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.dt_proj.bias._no_reinit = True  # mamba_ssm's marker: a model-level init must not zero it
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D.fill_(1.0)

    def mix(self, xz: Tensor) -> Tensor:
        """The block between the projections: ``xz`` (B, L, 2 * d_inner) -> gated scan output (B, L, d_inner)."""
        length = xz.shape[1]
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))  # causal: drop the right pad
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # the bias goes in as delta_bias, before the softplus
        A = -torch.exp(self.A_log.float())
        if self.scan == "reference" or (self.scan == "auto" and x.is_cuda):
            scan = selective_scan_reference if self.scan == "reference" else selective_scan
            y = scan(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), self.D,
                     z.transpose(1, 2), self.dt_proj.bias, True)  # fmt: skip
            return y.transpose(1, 2)
        return selective_scan_bld(x, delta, A, B, C, self.D, z, self.dt_proj.bias, True, self.chunk_size)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        if self.in_proj is None:
            raise RuntimeError("This Mamba was built without projections (projections=False); call mix() on "
                               "projected inputs (B, L, 2 * d_inner).")  # fmt: skip
        return self.out_proj(self.mix(self.in_proj(hidden_states)))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, "
                f"dt_rank={self.dt_rank}, chunk_size={self.chunk_size}, scan={self.scan}")  # fmt: skip
