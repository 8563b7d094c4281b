"""Registered entry points of the gpt2 family: the GPT-2 architectures (124M to XL, the Derf/DyT/LN/RMSNorm variants,
the Tiny Shakespeare nano), its data configs and its registry record."""

from __future__ import annotations

from typing import Any

from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.gpt2.layouts import HF_LAYOUT, NANOGPT_LAYOUT
from derf_zoo.models.gpt2.model import GPT2, GPT2_SITES, GPT2_SIZES

__all__ = [
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "FAMILY",
    "SHAKESPEARE_DATA_CFG",
    "TEXT_DATA_CFG",
    "gpt2",
    "gpt2_derf",
    "gpt2_dyt",
    "gpt2_large",
    "gpt2_ln",
    "gpt2_medium",
    "gpt2_nano",
    "gpt2_nano_derf",
    "gpt2_nano_dyt",
    "gpt2_nano_ln",
    "gpt2_nano_rmsnorm",
    "gpt2_rmsnorm",
    "gpt2_xl",
]


#: The GPT-2 family: next-token prediction (Hugging Face's "text-generation" pipeline tag).
FAMILY = register_family(ModelFamily(
    name="gpt2", norm_sites=GPT2_SITES, task="derf_zoo.tasks.LanguageModeling", task_type="text-generation",
    layouts={"transformers": HF_LAYOUT, "nanogpt": NANOGPT_LAYOUT},
))  # fmt: skip

CARD_INPUT = "token ids (batch, length), length <= {model.n_positions}, ids < {model.vocab_size}"
CARD_EXAMPLE = ("ids = model.generate(torch.zeros(1, 1, dtype=torch.long), max_new_tokens=50, top_k=10, "
                "generator=torch.Generator().manual_seed(0))")
TEXT_DATA_CFG = {"space": "text", "first_conv": None, "classifier": None, "card_input": CARD_INPUT,
                 "card_example": CARD_EXAMPLE}  # fmt: skip
#: The character vocabulary of the embedded Tiny Shakespeare (``derf_zoo.data.text.CharTokenizer``): decode the
#: generated ids with it.
SHAKESPEARE_DATA_CFG = {**TEXT_DATA_CFG, "tokenizer": "char:shakespeare", "card_example": CARD_EXAMPLE
                        + "\nfrom derf_zoo.data.text import shakespeare_tokenizer"
                        + "\ntext = shakespeare_tokenizer().decode(ids[0].tolist())"}



#: The paper's rows (shared/PAPER.md §3.5): every site's alpha 1.0 (the patch's defaults), Derf/DyT with the
#: sqrt(d) embedding scale (model default for point-wise norms).
_PAPER_NORMS = {"ln": "layernorm", "dyt": "dyt", "derf": "derf", "rmsnorm": "rmsnorm"}


def _build(name: str, size: str, pretrained: bool, kwargs: dict[str, Any], norm: str | None = None) -> GPT2:
    args = {**GPT2_SIZES[size], **({"norm": norm} if norm is not None else {})}
    data_cfg = SHAKESPEARE_DATA_CFG if size == "nano" else TEXT_DATA_CFG
    return build_model(GPT2, name, pretrained=pretrained, model_args=args, data_cfg=data_cfg, **kwargs)


@register_model(family="gpt2")
def gpt2(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M (HF ``gpt2``: width 768, 12 layers, 12 heads, context 1024); any ``norm=`` (LayerNorm default)."""
    return _build("gpt2", "124m", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_medium(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 medium, 355M (width 1024, 24 layers, 16 heads); any ``norm=``."""
    return _build("gpt2_medium", "medium", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_large(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 large, 774M (width 1280, 36 layers, 20 heads); any ``norm=``."""
    return _build("gpt2_large", "large", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_xl(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 XL, 1.5B (width 1600, 48 layers, 25 heads); any ``norm=``."""
    return _build("gpt2_xl", "xl", pretrained, kwargs)

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_ln_openwebtext.yaml")
def gpt2_ln(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with LayerNorm: the paper's baseline row (val loss 2.94 on OpenWebText)."""
    return _build("gpt2_ln", "124m", pretrained, kwargs, _PAPER_NORMS["ln"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_dyt_openwebtext.yaml")
def gpt2_dyt(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with DyT (alpha 1.0 per site, sqrt(d) embedding scale): the paper's row (2.97)."""
    return _build("gpt2_dyt", "124m", pretrained, kwargs, _PAPER_NORMS["dyt"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_derf_openwebtext.yaml")
def gpt2_derf(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with Derf (alpha 1.0 per site, sqrt(d) embedding scale): the paper's row (2.94)."""
    return _build("gpt2_derf", "124m", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_rmsnorm_openwebtext.yaml")
def gpt2_rmsnorm(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with RMSNorm: the paper's v2 row (2.95)."""
    return _build("gpt2_rmsnorm", "124m", pretrained, kwargs, _PAPER_NORMS["rmsnorm"])

@register_model(family="gpt2")
def gpt2_nano(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano (character level: 65 tokens, context 64, width 64, 4 layers; embedding init std 0.32 and no
    embedding scale, see ``embed_init_std``), the demo's size; any ``norm=``."""
    return _build("gpt2_nano", "nano", pretrained, kwargs)

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_ln_shakespeare.yaml")
def gpt2_nano_ln(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with LayerNorm, trained on the embedded Tiny Shakespeare (characters)."""
    return _build("gpt2_nano_ln", "nano", pretrained, kwargs, _PAPER_NORMS["ln"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_dyt_shakespeare.yaml")
def gpt2_nano_dyt(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with DyT (alpha 1.0 per site; embedding std 0.32, no scale) on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_dyt", "nano", pretrained, kwargs, _PAPER_NORMS["dyt"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_derf_shakespeare.yaml")
def gpt2_nano_derf(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with Derf (alpha 1.0 per site; embedding std 0.32, no scale) on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_derf", "nano", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_rmsnorm_shakespeare.yaml")
def gpt2_nano_rmsnorm(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with RMSNorm on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_rmsnorm", "nano", pretrained, kwargs, _PAPER_NORMS["rmsnorm"])


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}
