"""The DiT network: its modules, forward pass and norm sites (the family's doc: ``derf_zoo.models.dit``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.layers import AdaLNModulation, PatchEmbed, init_weights, modulate, tanh_gelu
from derf_zoo.layers.modulation import fold_norm_affine
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.models.dit.embedders import LabelEmbedder, TimestepEmbedder, sincos_pos_embed_2d
from derf_zoo.norms.registry import NormSpec
from derf_zoo.norms.sites import tag_site

__all__ = ["DIT_SITES", "DiT", "DiTFinalLayer", "xavier_linear"]


#: The DiT norm sites: pre-attention, pre-MLP (both modulated) and the final layer's norm.
DIT_SITES = ("attn", "mlp", "final")


def _affine_free(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    # DiT's norms carry no weight/bias (adaLN supplies them); an explicit "derf(affine=true)" spec still wins.
    return functools.partial(factory, affine=False)


class DiTFinalLayer(nn.Module):
    """``linear(modulate(norm_final(x), shift, scale))`` with (shift, scale) from ``c`` (adaLN, 2 chunks).

    Args:
        hidden_size: width.
        patch_size: patch side.
        out_channels: output channels per pixel.
        norm: the ``final`` site's norm (already affine-free).
        zero_init: start the modulation and the output linear at zero (the official DiT; the Derf paper keeps
            it only for LayerNorm).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, norm: nn.Module,
                 zero_init: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.zero_init = zero_init
        self.norm_final = tag_site(norm, "final")
        self.modulation = AdaLNModulation(hidden_size, hidden_size, 2, zero_init=zero_init)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

    @torch.no_grad()
    def init_weights(self, default: Callable[[nn.Module], None] | None = None) -> None:
        """Zero output (and modulation) with ``zero_init``; otherwise the family's ``default``."""
        self.modulation.init_weights(default)
        if self.zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)
        elif default is not None:
            default(self.linear)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c)
        return self.linear(modulate(self.norm_final(x), shift, scale))


@torch.no_grad()
def xavier_linear(module: nn.Module) -> None:
    """The official DiT's basic init: xavier-uniform Linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DiT(ZooModel):
    """Class-conditional Diffusion Transformer: ``forward(x, t, y)`` -> (N, out_channels, H, W).

    Args:
        input_size: input side (latent side for latent diffusion: 32 for 256 px images).
        patch_size: patch side; must divide ``input_size``.
        in_channels: input channels (4 for SD-VAE latents).
        hidden_size: width.
        depth: blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over ``hidden_size``.
        class_dropout_prob: label dropout for classifier-free guidance (0 builds no null class).
        num_classes: classes.
        learn_sigma: also predict the variance (output channels ``2 * in_channels``).
        norm: norm spec for every site or per site (``attn``, ``mlp``, ``final``); built affine-free.
        norm_eps: eps of normalizing layers (official 1e-6).
        adaln_zero_init: zero-init every block's adaLN modulation (adaLN-Zero).
        final_zero_init: zero-init the final layer's modulation and output linear.
        timestep_freq_shift: 0 (official) or 1 (diffusers) in the timestep sinusoid's frequencies.
    """

    norm_sites = DIT_SITES

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-6,
        adaln_zero_init: bool = True,
        final_zero_init: bool = True,
        timestep_freq_shift: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
                    depth=depth, num_heads=num_heads, num_classes=num_classes)  # fmt: skip
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}; choose an "
                             f"input_size that is a multiple of {patch_size}.")  # fmt: skip
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}.")
        if hidden_size % 4:
            raise ValueError(f"hidden_size must be divisible by 4 (2-D sin-cos positions), got {hidden_size}.")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.learn_sigma = learn_sigma
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size, freq_shift=timestep_freq_shift)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        grid = input_size // patch_size
        # Fixed, not learned (official: a frozen Parameter); a persistent buffer keeps it in the state dict.
        self.register_buffer("pos_embed", sincos_pos_embed_2d(hidden_size, grid)[None])
        free = {site: _affine_free(f) for site, f in self.resolve_norms(norm).items()}
        # The final norm is modulated inside the final layer (the family's), so the backbone has none.
        self.backbone = Transformer(
            hidden_size, depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
            norm={s: free[s] for s in ("attn", "mlp")}, norm_eps=norm_eps, act_layer=tanh_gelu, final_norm="none",
            cond_dim=hidden_size, modulation_zero_init=adaln_zero_init,
        )  # fmt: skip
        self.final_layer = DiTFinalLayer(hidden_size, patch_size, self.out_channels,
                                         free["final"](hidden_size, eps=norm_eps), zero_init=final_zero_init)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The official init: xavier-uniform linears with zero biases, the patch embedding as a linear; the
        embedders' normal(0.02) and the zero-inits are the modules' own (they survive this)."""
        init_weights(self, xavier_linear)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, T, p*p*C) -> (N, C, H, W)."""
        p, c = self.patch_size, self.out_channels
        h = w = self.input_size // p
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def _timesteps(self, t: Tensor | float, n: int, device: torch.device) -> Tensor:
        t = torch.as_tensor(t, device=device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"Timesteps must be a scalar or of shape ({n},), got {tuple(t.shape)}.")
        return t

    def norm_folds(self) -> dict[str, Callable[[Tensor, Tensor], None]]:
        """Where each affine-free norm's output goes: ``{norm name: fold(weight, bias)}`` that applies a per-channel
        affine of that output exactly, through the adaLN shift and the next linear layer
        (:func:`derf_zoo.layers.modulation.fold_norm_affine`). The fitted conversion uses it."""
        folds = {}
        for i, block in enumerate(self.backbone.blocks):
            prefix = f"backbone.blocks.{i}"
            folds[f"{prefix}.norm1"] = functools.partial(fold_norm_affine, block.modulation, 0, 1, block.mixer.qkv)
            if block.mlp is not None:
                folds[f"{prefix}.norm2"] = functools.partial(fold_norm_affine, block.modulation, 3, 4, block.mlp.fc1)
        final = self.final_layer
        folds["final_layer.norm_final"] = functools.partial(fold_norm_affine, final.modulation, 0, 1, final.linear)
        return folds

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Args:
        x: (N, in_channels, input_size, input_size) noisy inputs.
        t: (N,) diffusion timesteps (or one for all).
        y: (N,) class labels; None (or ``num_classes``) is the null class (unconditional).
        """
        n = x.shape[0]
        if y is None:
            y = self.y_embedder.null_labels(n, x.device)
        c = self.t_embedder(self._timesteps(t, n, x.device)) + self.y_embedder(y, self.training)
        h = self.backbone(self.x_embedder(x) + self.pos_embed, c)
        return self.unpatchify(self.final_layer(h, c))

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float,
                         guided_channels: int | None = None) -> Tensor:  # fmt: skip
        """The official sampling entry: the batch is [cond half, uncond half] of the same inputs; the guided
        epsilon ``uncond + cfg_scale * (cond - uncond)`` replaces both halves' first ``guided_channels``
        channels (default: all ``in_channels``; the official code guides 3 "for exact reproducibility")."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y)
        k = self.in_channels if guided_channels is None else guided_channels
        eps, rest = out[:, :k], out[:, k:]
        cond, uncond = eps.split(len(eps) // 2, dim=0)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)
