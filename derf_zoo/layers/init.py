"""Weight initialisation that respects the modules which initialise themselves."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["gpt2_normal", "init_weights", "trunc_normal_linear"]


@torch.no_grad()
def trunc_normal_linear(module: nn.Module, std: float = 0.02) -> None:
    """timm's ViT default for one module: a ``nn.Linear`` gets truncated-normal(std) weights and a zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@torch.no_grad()
def gpt2_normal(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2's default for one module (HF's and nanoGPT's ``_init_weights``, HyenaDNA's reference): normal(std)
    ``nn.Linear`` weights with zero biases and normal(std) ``nn.Embedding`` rows."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)


@torch.no_grad()
def init_weights(root: nn.Module, default: Callable[[nn.Module], None] = trunc_normal_linear) -> None:
    """Apply ``default`` to every module under ``root``, except the modules that initialise themselves.

    A submodule with an ``init_weights()`` method is initialised by that method, and ``default`` never touches
    it or anything inside it; a method that takes an argument receives ``default`` (to use where it has no
    scheme of its own). That is how a layer's own scheme survives its family's init: adaLN-Zero's zero
    modulation and DiT's zero output layer stay zero, while every other Linear gets the family's default.

    Args:
        root: the model (its own ``init_weights``, if it has one, is what calls this).
        default: the per-module init (called on every other module, leaves and containers alike).
    """

    def visit(module: nn.Module) -> None:
        for child in module.children():
            own = getattr(child, "init_weights", None)
            if callable(own):
                own(default) if inspect.signature(own).parameters else own()
                continue
            default(child)
            visit(child)

    default(root)
    visit(root)
