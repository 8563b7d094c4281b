"""Registered entry points of the dit family: the DiT architectures (S/B/L/XL with patch 2/4/8, the paper's Derf/DyT/LN
settings, the digits nano), its data configs and its registry record."""

from __future__ import annotations

from typing import Any

from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.dit.layouts import DIFFUSERS_LAYOUT, OFFICIAL_LAYOUT
from derf_zoo.models.dit.model import DIT_SITES, DiT

__all__ = [
    "CARD_EXAMPLE",
    "DIGITS_DATA_CFG",
    "FAMILY",
    "LATENT_DATA_CFG",
    "dit_b_2",
    "dit_b_4",
    "dit_b_4_derf",
    "dit_b_4_dyt",
    "dit_b_4_ln",
    "dit_b_8",
    "dit_l_2",
    "dit_l_4",
    "dit_l_4_derf",
    "dit_l_4_dyt",
    "dit_l_4_ln",
    "dit_l_8",
    "dit_nano_derf",
    "dit_nano_ln",
    "dit_s_2",
    "dit_s_4",
    "dit_s_8",
    "dit_xl_2",
    "dit_xl_2_derf",
    "dit_xl_2_dyt",
    "dit_xl_2_ln",
    "dit_xl_4",
    "dit_xl_8",
]


#: The DiT family. Pipeline tag: Hugging Face has no class-conditional image-generation tag; the input is a
#: class index and noise, never text, so "unconditional-image-generation" (the tag of DDPM/DiT-style image
#: generators that take no prompt) describes it better than "text-to-image", which promises a text encoder.
FAMILY = register_family(ModelFamily(
    name="dit", norm_sites=DIT_SITES, task="derf_zoo.tasks.Diffusion", task_type="unconditional-image-generation",
    layouts={"official": OFFICIAL_LAYOUT, "diffusers": DIFFUSERS_LAYOUT},
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
