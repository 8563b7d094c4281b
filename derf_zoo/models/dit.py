"""Diffusion Transformer (Peebles & Xie, 2023) on the shared backbone, with a norm slot per site.

Architecture after the official DiT (facebookresearch/DiT ``models.py``): patch embedding + fixed 2-D sin-cos
positions, a timestep embedder and a label embedder (null class + label dropout for classifier-free guidance)
whose sum ``c`` modulates every block through adaLN (shift/scale/gate, 6 chunks) and the final layer (shift/
scale), then a linear to ``p * p * out_channels`` and unpatchify. ``learn_sigma`` doubles the output channels
(epsilon and the interpolation of the variance).

The paper (arXiv 2512.10938 §3.2; official ``zlab-princeton/Derf DiT/``) replaces the three affine-free
LayerNorms (block ``norm1``/``norm2``, ``final_layer.norm_final``) by Derf without weight/bias: only alpha and
shift are learned; the adaLN modulation supplies the affine. It also changes the zero-init (see the paper rows'
entry points below). The norm sites here are ``attn``, ``mlp`` and ``final``, all built with ``affine=False``.

Names follow the official code for the stems and head (``x_embedder.proj``, ``t_embedder.mlp.0/2``,
``y_embedder.embedding_table``, ``pos_embed``, ``final_layer.linear``); the blocks live in ``backbone``.
:func:`from_official` / :func:`to_official` map the official layout and :func:`from_diffusers` imports a
``diffusers.DiTTransformer2DModel``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import load_into
from derf_zoo.layers import AdaLNModulation, PatchEmbed, init_weights, modulate
from derf_zoo.layers.dit_embed import LabelEmbedder, TimestepEmbedder, sincos_pos_embed_2d
from derf_zoo.layers.modulation import fold_norm_affine
from derf_zoo.models._builder import build_model, check_int
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import tag_site

__all__ = ["DiT", "from_diffusers", "from_official", "official_to_zoo_key", "to_official", "zoo_to_official_key"]

#: The DiT norm sites: pre-attention, pre-MLP (both modulated) and the final layer's norm.
DIT_SITES = ("attn", "mlp", "final")

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.*)$")


def official_to_zoo_key(key: str) -> str:
    """Map a facebookresearch/DiT (or zlab-princeton/Derf DiT) state-dict key to ours."""
    m = _BLOCK_RE.match(key)
    if m:
        i, rest = m.groups()
        rest = rest.replace("attn.", "mixer.", 1) if rest.startswith("attn.") else rest
        rest = rest.replace("adaLN_modulation.1.", "modulation.linear.", 1)
        return f"backbone.blocks.{i}.{rest}"
    return key.replace("final_layer.adaLN_modulation.1.", "final_layer.modulation.linear.", 1)


def zoo_to_official_key(key: str) -> str:
    """The inverse of :func:`official_to_zoo_key`."""
    if key.startswith("backbone.blocks."):
        i, rest = key[len("backbone.blocks.") :].split(".", 1)
        rest = rest.replace("mixer.", "attn.", 1) if rest.startswith("mixer.") else rest
        rest = rest.replace("modulation.linear.", "adaLN_modulation.1.", 1)
        return f"blocks.{i}.{rest}"
    return key.replace("final_layer.modulation.linear.", "final_layer.adaLN_modulation.1.", 1)


#: The DiT family. Pipeline tag: Hugging Face has no class-conditional image-generation tag; the input is a
#: class index and noise, never text, so "unconditional-image-generation" (the tag of DDPM/DiT-style image
#: generators that take no prompt) describes it better than "text-to-image", which promises a text encoder.
FAMILY = register_family(ModelFamily(
    name="dit", norm_sites=DIT_SITES, task="derf_zoo.tasks.Diffusion", task_type="unconditional-image-generation",
    key_maps={"official": official_to_zoo_key},
))  # fmt: skip

#: The model card's usage lines (derf_zoo.hub.card fills {input_size} and {name}): a DiT is called on a noisy input,
#: its timestep and its class.
CARD_EXAMPLE = ("x_t, t, y = torch.randn(2, *{input_size}), torch.tensor([999, 500]), torch.tensor([0, 1])"
                "\noutput = model(x_t, t, y)  # predicted noise (and variance with learn_sigma)"
                "\n# samples: derf-zoo sample {name} --out grid.png")
LATENT_DATA_CFG = {
    "input_size": (4, 32, 32),
    "space": "latent",
    "vae": "stabilityai/sd-vae-ft-ema",
    "latent_scale": 0.18215,
    "first_conv": "x_embedder.proj",
    "classifier": None,
    "card_example": CARD_EXAMPLE,
}
DIGITS_DATA_CFG = {
    "input_size": (1, 8, 8),
    "space": "pixel",
    "mean": (0.5,),  # pixels in [0, 1] are mapped to [-1, 1]
    "std": (0.5,),
    "first_conv": "x_embedder.proj",
    "classifier": None,
    "card_example": CARD_EXAMPLE,
}


def _tanh_gelu() -> nn.Module:
    return nn.GELU(approximate="tanh")


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


class DiT(nn.Module, HubMixin):
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
        for name, value, minimum in (("input_size", input_size, 1), ("patch_size", patch_size, 1),
                                     ("in_channels", in_channels, 1), ("hidden_size", hidden_size, 1),
                                     ("depth", depth, 1), ("num_heads", num_heads, 1),
                                     ("num_classes", num_classes, 1)):  # fmt: skip
            check_int(name, value, minimum)
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
        sites = resolve_norm_sites(norm, FAMILY.norm_sites)
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
        free = {site: _affine_free(f) for site, f in sites.items()}
        self.backbone = Transformer(
            hidden_size, depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm=free,
            norm_eps=norm_eps, act_layer=_tanh_gelu, final_norm=False, cond_dim=hidden_size,
            modulation_zero_init=adaln_zero_init,
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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return set()

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


# ---- entry points ---------------------------------------------------------------------------------------

_SIZES = {
    "s": {"hidden_size": 384, "depth": 12, "num_heads": 6},
    "b": {"hidden_size": 768, "depth": 12, "num_heads": 12},
    "l": {"hidden_size": 1024, "depth": 24, "num_heads": 16},
    "xl": {"hidden_size": 1152, "depth": 28, "num_heads": 16},
}
_LATENT = {"input_size": 32, "in_channels": 4, "num_classes": 1000, "learn_sigma": True, "class_dropout_prob": 0.1}
# An architecture of its own for the 8x8 digits in pixel space: 16 tokens of width 64 (~0.3M parameters).
_NANO = {"input_size": 8, "patch_size": 2, "in_channels": 1, "num_classes": 10, "hidden_size": 64, "depth": 4,
         "num_heads": 4, "learn_sigma": True, "class_dropout_prob": 0.1}  # fmt: skip



def _generic(name: str, size: str, patch: int, kwargs: dict[str, Any], pretrained: bool) -> DiT:
    """The official DiT-{size}/{patch} (256 px, SD-VAE latents), adaLN-Zero; any ``norm=``."""
    return build_model(DiT, name, pretrained=pretrained, model_args={**_LATENT, **_SIZES[size], "patch_size": patch},
                       data_cfg=LATENT_DATA_CFG, **kwargs)  # fmt: skip


def _paper(name: str, size: str, patch: int, norm: str, kwargs: dict[str, Any], pretrained: bool) -> DiT:
    """A row of the paper's Tab. 9 with the official Derf code's init (zlab-princeton/Derf DiT/models.py,
    train.py; shared/PAPER.md §3.2): LayerNorm keeps adaLN-Zero in the blocks and the final layer. For the
    point-wise norms (Derf, DyT) the paper drops zero-init because it hurts them; the code still zeroes the block
    modulation of DiT-B (``'B' in model``), and never the final layer. alpha_0 = 1.0 for DiT-XL/2 (code only:
    ``'XL' in model``), 0.5 otherwise."""
    layernorm = norm == "layernorm"
    args = {**_LATENT, **_SIZES[size], "patch_size": patch,
            "norm": norm if layernorm or size != "xl" else f"{norm}(alpha=1.0)",
            "adaln_zero_init": layernorm or size == "b", "final_zero_init": layernorm}  # fmt: skip
    return build_model(DiT, name, pretrained=pretrained, model_args=args, data_cfg=LATENT_DATA_CFG, **kwargs)


def _nano(name: str, norm: str, kwargs: dict[str, Any], pretrained: bool) -> DiT:
    """The demo's DiT for 8x8 grayscale digits in pixel space. Zero-init as the paper's DiT-B rows."""
    layernorm = norm == "layernorm"
    args = {**_NANO, "norm": norm, "adaln_zero_init": True, "final_zero_init": layernorm}
    return build_model(DiT, name, pretrained=pretrained, model_args=args, data_cfg=DIGITS_DATA_CFG, **kwargs)


@register_model(family="dit")
def dit_s_2(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-S/2 (width 384, depth 12, 6 heads, patch 2) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_s_2", "s", 2, kwargs, pretrained)

@register_model(family="dit")
def dit_s_4(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-S/4 (width 384, depth 12, 6 heads, patch 4) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_s_4", "s", 4, kwargs, pretrained)

@register_model(family="dit")
def dit_s_8(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-S/8 (width 384, depth 12, 6 heads, patch 8) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_s_8", "s", 8, kwargs, pretrained)

@register_model(family="dit")
def dit_b_2(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/2 (width 768, depth 12, 12 heads, patch 2) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_b_2", "b", 2, kwargs, pretrained)

@register_model(family="dit")
def dit_b_4(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/4 (width 768, depth 12, 12 heads, patch 4) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_b_4", "b", 4, kwargs, pretrained)

@register_model(family="dit")
def dit_b_8(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/8 (width 768, depth 12, 12 heads, patch 8) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_b_8", "b", 8, kwargs, pretrained)

@register_model(family="dit")
def dit_l_2(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/2 (width 1024, depth 24, 16 heads, patch 2) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_l_2", "l", 2, kwargs, pretrained)

@register_model(family="dit")
def dit_l_4(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/4 (width 1024, depth 24, 16 heads, patch 4) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_l_4", "l", 4, kwargs, pretrained)

@register_model(family="dit")
def dit_l_8(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/8 (width 1024, depth 24, 16 heads, patch 8) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_l_8", "l", 8, kwargs, pretrained)

@register_model(family="dit")
def dit_xl_2(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/2 (width 1152, depth 28, 16 heads, patch 2) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_xl_2", "xl", 2, kwargs, pretrained)

@register_model(family="dit")
def dit_xl_4(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/4 (width 1152, depth 28, 16 heads, patch 4) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_xl_4", "xl", 4, kwargs, pretrained)

@register_model(family="dit")
def dit_xl_8(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/8 (width 1152, depth 28, 16 heads, patch 8) on 32x32x4 latents; any ``norm=`` (LayerNorm default)."""
    return _generic("dit_xl_8", "xl", 8, kwargs, pretrained)


@register_model(family="dit", recipe="recipes/dit/dit_b_4_derf_in1k256.yaml")
def dit_b_4_derf(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/4 with Derf (alpha_0 0.5), block adaLN-Zero kept, final layer not zeroed: the paper's row."""
    return _paper("dit_b_4_derf", "b", 4, "derf", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_b_4_dyt_in1k256.yaml")
def dit_b_4_dyt(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/4 with DyT (alpha_0 0.5), block adaLN-Zero kept, final layer not zeroed: the paper's row."""
    return _paper("dit_b_4_dyt", "b", 4, "dyt", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_b_4_ln_in1k256.yaml")
def dit_b_4_ln(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-B/4 with LayerNorm and the official adaLN-Zero init: the paper's baseline row."""
    return _paper("dit_b_4_ln", "b", 4, "layernorm", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_l_4_derf_in1k256.yaml")
def dit_l_4_derf(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/4 with Derf (alpha_0 0.5), no zero-init anywhere: the paper's row."""
    return _paper("dit_l_4_derf", "l", 4, "derf", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_l_4_dyt_in1k256.yaml")
def dit_l_4_dyt(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/4 with DyT (alpha_0 0.5), no zero-init anywhere: the paper's row."""
    return _paper("dit_l_4_dyt", "l", 4, "dyt", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_l_4_ln_in1k256.yaml")
def dit_l_4_ln(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-L/4 with LayerNorm and the official adaLN-Zero init: the paper's baseline row."""
    return _paper("dit_l_4_ln", "l", 4, "layernorm", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_xl_2_derf_in1k256.yaml",
                conversion="recipes/dit/dit_xl_2_derf_from_official_in1k256.yaml")
def dit_xl_2_derf(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/2 with Derf (alpha_0 1.0, as the official code sets for XL), no zero-init: the paper's row."""
    return _paper("dit_xl_2_derf", "xl", 2, "derf", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_xl_2_dyt_in1k256.yaml")
def dit_xl_2_dyt(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/2 with DyT (alpha_0 1.0, as the official code sets for XL), no zero-init: the paper's row."""
    return _paper("dit_xl_2_dyt", "xl", 2, "dyt", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_xl_2_ln_in1k256.yaml")
def dit_xl_2_ln(pretrained: bool = False, **kwargs: Any) -> DiT:
    """DiT-XL/2 with LayerNorm and the official adaLN-Zero init: the paper's baseline row."""
    return _paper("dit_xl_2_ln", "xl", 2, "layernorm", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_nano_derf_digits.yaml")
def dit_nano_derf(pretrained: bool = False, **kwargs: Any) -> DiT:
    """A 0.3M-parameter DiT for 8x8 grayscale digits in pixel space (patch 2, width 64, depth 4, 10 classes,
    learn_sigma) with Derf; the demo's model."""
    return _nano("dit_nano_derf", "derf", kwargs, pretrained)

@register_model(family="dit", recipe="recipes/dit/dit_nano_ln_digits.yaml")
def dit_nano_ln(pretrained: bool = False, **kwargs: Any) -> DiT:
    """A 0.3M-parameter DiT for 8x8 grayscale digits in pixel space (patch 2, width 64, depth 4, 10 classes,
    learn_sigma) with LayerNorm; the demo's model."""
    return _nano("dit_nano_ln", "layernorm", kwargs, pretrained)


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}


# ---- the official layout ----------------------------------------------------------------------------------

_OFFICIAL_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}  # DiT-S/B/L/XL


def _norm_from_keys(sd: Mapping[str, Tensor], prefix: str) -> str:
    if f"{prefix}.alpha" in sd:
        return "derf" if f"{prefix}.shift" in sd else "dyt"
    return "layernorm"


def _args_from_official(sd: Mapping[str, Tensor], model_args: Mapping[str, Any]) -> dict[str, Any]:
    needed = ("x_embedder.proj.weight", "pos_embed", "y_embedder.embedding_table.weight", "final_layer.linear.weight",
              "blocks.0.attn.qkv.weight")  # fmt: skip
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ValueError(f"from_official: this does not look like an official DiT state dict; missing {missing}.")
    proj = sd["x_embedder.proj.weight"]
    hidden, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    grid = math.isqrt(sd["pos_embed"].shape[1])
    out = sd["final_layer.linear.weight"].shape[0] // (patch * patch)
    if out not in (in_channels, 2 * in_channels):
        raise ValueError(f"from_official: the output layer has {out} channels per pixel for {in_channels} input "
                         "channels; DiT predicts C (learn_sigma=False) or 2C (learn_sigma=True).")  # fmt: skip
    dropout = model_args.get("class_dropout_prob", 0.1)
    rows = sd["y_embedder.embedding_table.weight"].shape[0]
    heads = model_args.get("num_heads", _OFFICIAL_HEADS.get(hidden))
    if heads is None:
        raise ValueError(f"from_official: width {hidden} is no standard DiT size, so the number of heads cannot be "
                         "read from the weights; pass num_heads=...")  # fmt: skip
    norms = {"attn": _norm_from_keys(sd, "blocks.0.norm1"), "mlp": _norm_from_keys(sd, "blocks.0.norm2"),
             "final": _norm_from_keys(sd, "final_layer.norm_final")}  # fmt: skip
    return {
        "input_size": grid * patch,
        "patch_size": patch,
        "in_channels": in_channels,
        "hidden_size": hidden,
        "depth": 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))),
        "num_heads": heads,
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        "class_dropout_prob": dropout,
        "num_classes": rows - int(dropout > 0),  # the null class is the last row
        "learn_sigma": out == 2 * in_channels,
        "norm": norms["attn"] if len(set(norms.values())) == 1 else norms,
    }


def from_official(state_dict: nn.Module | Mapping[str, Tensor], **model_args: Any) -> DiT:
    """Build a :class:`DiT` holding an official DiT state dict (facebookresearch/DiT or zlab-princeton/Derf DiT),
    or the official ``DiT`` module itself (its ``state_dict()``; the result keeps its train/eval mode).

    Shapes, depth, ``learn_sigma`` and the norm (LayerNorm, or Derf/DyT from ``alpha``/``shift`` keys) are read
    from the weights; ``num_heads`` defaults to the standard size's; the null class is assumed (pass
    ``class_dropout_prob=0`` for a table without it). ``model_args`` override anything else
    (``norm="derf(alpha=1.0)"``, ...).

    Raises:
        ValueError: not an official DiT state dict, or a weight is missing, unexpected or misshapen (nothing
            is loaded then).
    """
    module = state_dict if isinstance(state_dict, nn.Module) else None
    sd = dict(module.state_dict() if module is not None else state_dict)
    args = {**_args_from_official(sd, model_args), **model_args}
    model = DiT(**args)
    model.model_args = args
    load_into(model, sd, source="from_official: the official DiT state dict", key_map=official_to_zoo_key)
    if module is not None:
        model.train(module.training)
    return model


def to_official(model: DiT) -> dict[str, Tensor]:
    """``model``'s weights in the official DiT layout (``blocks.N.attn.qkv``, ``blocks.N.adaLN_modulation.1``,
    ``final_layer.adaLN_modulation.1``, ...), ready for the official ``DiT.load_state_dict``."""
    return {zoo_to_official_key(k): v for k, v in model.state_dict().items()}


# ---- diffusers ----------------------------------------------------------------------------------------------

_DIFFUSERS_EMBED = re.compile(r"^transformer_blocks\.(\d+)\.norm1\.emb\.(.*)$")


def _diffusers_to_zoo(sd: Mapping[str, Tensor], depth: int) -> dict[str, Tensor]:
    """Rename a ``DiTTransformer2DModel`` state dict to ours; the per-block embedders must agree."""
    out: dict[str, Tensor] = {}
    embedders: dict[str, dict[int, Tensor]] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    rename = {
        "norm1.linear.": "modulation.linear.",
        "attn1.to_out.0.": "mixer.proj.",
        "ff.net.0.proj.": "mlp.fc1.",
        "ff.net.2.": "mlp.fc2.",
    }
    for key, value in sd.items():
        m = _DIFFUSERS_EMBED.match(key)
        if m:
            embedders.setdefault(m.group(2), {})[int(m.group(1))] = value
            continue
        if key.startswith("pos_embed.proj."):
            out["x_embedder.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("proj_out_1."):
            out["final_layer.modulation.linear." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("proj_out_2."):
            out["final_layer.linear." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            qm = re.match(r"attn1\.to_([qkv])\.(weight|bias)$", rest)
            if qm:
                qkv.setdefault((int(i), qm.group(2)), {})[qm.group(1)] = value
                continue
            for old, new in rename.items():
                if rest.startswith(old):
                    out[f"backbone.blocks.{i}.{new}{rest[len(old):]}"] = value
                    break
            else:
                out[key] = value  # unknown: load_into names it as unexpected
        else:
            out[key] = value
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            lacking = sorted({"q", "k", "v"} - set(parts))
            raise ValueError(f"from_diffusers: block {i} lacks the attention {kind} of {lacking}.")
        out[f"backbone.blocks.{i}.mixer.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    names = {
        "timestep_embedder.linear_1.weight": "t_embedder.mlp.0.weight",
        "timestep_embedder.linear_1.bias": "t_embedder.mlp.0.bias",
        "timestep_embedder.linear_2.weight": "t_embedder.mlp.2.weight",
        "timestep_embedder.linear_2.bias": "t_embedder.mlp.2.bias",
        "class_embedder.embedding_table.weight": "y_embedder.embedding_table.weight",
    }
    for name, per_block in embedders.items():
        first = per_block.get(0)
        if first is None or len(per_block) != depth:
            raise ValueError(f"from_diffusers: the embedder weight {name!r} is not in every block.")
        differ = [i for i, v in sorted(per_block.items()) if v.shape != first.shape or not torch.equal(v, first)]
        if differ:
            raise ValueError(
                f"from_diffusers: diffusers' DiT keeps a timestep/label embedder in every block; this model's "
                f"{name!r} differs between block 0 and block(s) {differ[:8]}. derf_zoo's DiT (like the official "
                "one) has one embedder shared by all blocks, so these weights cannot be imported exactly. (A "
                "DiTTransformer2DModel converted from the official weights has identical copies; one trained in "
                "diffusers may not.)"
            )
        out[names.get(name, "t_embedder." + name)] = first
    return out


def from_diffusers(source: nn.Module | Mapping[str, Tensor], config: Mapping[str, Any] | None = None,
                   **model_args: Any) -> DiT:  # fmt: skip
    """Import a ``diffusers.DiTTransformer2DModel`` (the model, or its state dict plus its ``config``).

    The result computes what the diffusers model computes: its timestep sinusoid divides the frequencies by
    ``half - 1`` instead of the official ``half`` (``downscale_freq_shift=1``), which the imported model keeps as
    ``timestep_freq_shift=1``; its pre-MLP norm takes ``config.norm_eps`` (1e-5 by default) while the pre-
    attention and final norms use 1e-6, which the per-site norm spec keeps. diffusers repeats the timestep and
    label embedders in every block; they are imported once and must be identical in every block.

    Raises:
        ValueError: the config is no DiT (``norm_type`` other than ``ada_norm_zero``, affine norms, another
            activation), the per-block embedders differ, or a weight does not fit.
    """
    if isinstance(source, nn.Module):
        config, sd = dict(source.config), source.state_dict()
    else:
        if config is None:
            raise ValueError("from_diffusers: pass the model's config with a state dict (model.config).")
        config, sd = dict(config), dict(source)
    problems = []
    if config.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        problems.append(f"norm_type={config['norm_type']!r} (DiT uses 'ada_norm_zero')")
    if config.get("norm_elementwise_affine", False):
        problems.append("norm_elementwise_affine=True (DiT's norms are affine-free)")
    if config.get("activation_fn", "gelu-approximate") != "gelu-approximate":
        problems.append(f"activation_fn={config['activation_fn']!r} (DiT uses 'gelu-approximate')")
    if not config.get("attention_bias", True):
        problems.append("attention_bias=False (DiT's attention has biases)")
    if problems:
        raise ValueError("from_diffusers: cannot import this DiTTransformer2DModel: " + "; ".join(problems) + ".")
    heads, head_dim = config.get("num_attention_heads", 16), config.get("attention_head_dim", 72)
    in_channels = config.get("in_channels", 4)
    out_channels = config.get("out_channels") or in_channels
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"from_diffusers: out_channels {out_channels} for in_channels {in_channels}; DiT predicts C "
                         "or 2C.")  # fmt: skip
    depth = config.get("num_layers", 28)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
    if blocks != set(range(depth)):
        held = f"{len(blocks)} transformer blocks" + (f" (transformer_blocks.{min(blocks)}-{max(blocks)})" if blocks
                                                       else "")  # fmt: skip
        raise ValueError(f"from_diffusers: the config says num_layers={depth}, but the weights hold {held}: the "
                         "config is not this model's. Pass the model itself, or its own config (model.config).")
    table = sd.get("transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight")
    num_classes = config.get("num_embeds_ada_norm", 1000)
    dropout = 0.1 if table is None or table.shape[0] == num_classes + 1 else 0.0
    eps = config.get("norm_eps", 1e-5)
    args = {
        "input_size": config.get("sample_size", 32),
        "patch_size": config.get("patch_size", 2),
        "in_channels": in_channels,
        "hidden_size": heads * head_dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": 4.0,
        "class_dropout_prob": dropout,
        "num_classes": num_classes,
        "learn_sigma": out_channels == 2 * in_channels,
        # diffusers: AdaLayerNormZero's norm (pre-attention) and norm_out use eps 1e-6, norm3 (pre-MLP) norm_eps
        "norm": {"attn": "layernorm(eps=1e-6)", "mlp": f"layernorm(eps={float(eps)!r})",
                 "final": "layernorm(eps=1e-6)"},
        "timestep_freq_shift": 1.0,
        **model_args,
    }
    model = DiT(**args)
    model.model_args = args
    # diffusers does not save its fixed positions (a non-persistent buffer); ours are the same sin-cos table.
    load_into(model, _diffusers_to_zoo(sd, depth), source="from_diffusers: the DiTTransformer2DModel state dict",
              may_be_missing=("pos_embed",))
    if isinstance(source, nn.Module):
        model.train(source.training)
    return model
