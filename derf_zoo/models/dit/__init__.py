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
:func:`from_official` / :func:`to_official` map the official layout (``OFFICIAL_LAYOUT``) and
:func:`from_diffusers` / :func:`to_diffusers` a ``diffusers.DiTTransformer2DModel`` (``DIFFUSERS_LAYOUT``); the
family registers both as ``"official"`` and ``"diffusers"``.
"""

from __future__ import annotations

from derf_zoo.models.dit.entrypoints import (
    CARD_EXAMPLE,
    DIGITS_DATA_CFG,
    FAMILY,
    LATENT_DATA_CFG,
    dit_b_2,
    dit_b_4,
    dit_b_4_derf,
    dit_b_4_dyt,
    dit_b_4_ln,
    dit_b_8,
    dit_l_2,
    dit_l_4,
    dit_l_4_derf,
    dit_l_4_dyt,
    dit_l_4_ln,
    dit_l_8,
    dit_nano_derf,
    dit_nano_ln,
    dit_s_2,
    dit_s_4,
    dit_s_8,
    dit_xl_2,
    dit_xl_2_derf,
    dit_xl_2_dyt,
    dit_xl_2_ln,
    dit_xl_4,
    dit_xl_8,
)
from derf_zoo.models.dit.layouts import (
    DIFFUSERS_LAYOUT,
    OFFICIAL_LAYOUT,
    from_diffusers,
    from_official,
    to_diffusers,
    to_official,
)
from derf_zoo.models.dit.model import (
    DIT_SITES,
    DiT,
    DiTFinalLayer,
    xavier_linear,
)

__all__ = [
    "CARD_EXAMPLE",
    "DIFFUSERS_LAYOUT",
    "DIGITS_DATA_CFG",
    "DIT_SITES",
    "FAMILY",
    "LATENT_DATA_CFG",
    "OFFICIAL_LAYOUT",
    "DiT",
    "DiTFinalLayer",
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
    "from_diffusers",
    "from_official",
    "to_diffusers",
    "to_official",
    "xavier_linear",
]
