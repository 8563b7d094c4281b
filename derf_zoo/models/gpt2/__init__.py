"""GPT-2 (Radford et al., 2019) on the shared backbone, with the norm slot of the Derf paper's language model.

Architecture as Hugging Face's ``GPT2LMHeadModel`` and nanoGPT's ``GPT`` define it: token embedding ``wte`` plus
learned absolute positions ``wpe``, embedding dropout, ``n_layer`` pre-norm blocks ``x + attn(ln_1(x))``
(causal self-attention, fused qkv) then ``x + mlp(ln_2(x))`` (4x MLP, GELU), a final norm ``ln_f`` and an LM
head tied to ``wte``. The blocks are the backbone's (:class:`~derf_zoo.backbone.Transformer`); the family owns only
the embeddings, the tied head and :meth:`GPT2.generate`.

The Derf paper's nanoGPT patch (shared/PAPER.md §3.5) adds two things, both model arguments here:

- one alpha per norm site: ``attn_alpha`` (``ln_1``, the attention pre-norm), ``mlp_alpha`` (``ln_2``) and
  ``final_alpha`` (``ln_f``), each 1.0 by default (the patch's ``attn/ffn/dec_alpha_init_value``). One alpha for
  every site is what people report as "does not converge" for LLM-style models;
- for point-wise norms, a learnable scalar ``shared_scale`` on ``tok_emb + pos_emb``, initialised to
  ``sqrt(n_embd)`` (27.7 for 768): GPT-2's embeddings start at std 0.02, and without a normalizing layer nothing
  rescales them, so activations start tiny and training stalls (the DyT paper's LLaMA trick, App. A).

Weight layouts: :func:`from_transformers` / :func:`to_transformers` (HF's ``Conv1D`` stores weights transposed)
and :func:`from_nanogpt` / :func:`to_nanogpt` (nanoGPT's ``ckpt.pt``, including the Derf patch's keys). Each
layout is one declarative table (:data:`HF_LAYOUT`, :data:`NANOGPT_LAYOUT`) of renames and named operations;
the reverse direction is derived from the same table.
"""

from __future__ import annotations

from derf_zoo.models.gpt2.entrypoints import (
    CARD_EXAMPLE,
    CARD_INPUT,
    FAMILY,
    SHAKESPEARE_DATA_CFG,
    TEXT_DATA_CFG,
    gpt2,
    gpt2_derf,
    gpt2_dyt,
    gpt2_large,
    gpt2_ln,
    gpt2_medium,
    gpt2_nano,
    gpt2_nano_derf,
    gpt2_nano_dyt,
    gpt2_nano_ln,
    gpt2_nano_rmsnorm,
    gpt2_rmsnorm,
    gpt2_xl,
)
from derf_zoo.models.gpt2.layouts import (
    HF_LAYOUT,
    NANOGPT_LAYOUT,
    from_nanogpt,
    from_transformers,
    to_nanogpt,
    to_transformers,
    to_transformers_state_dict,
)
from derf_zoo.models.gpt2.model import (
    DEFAULT_ALPHA,
    GPT2,
    GPT2_SITES,
    GPT2_SIZES,
    Activation,
)

__all__ = [
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "DEFAULT_ALPHA",
    "FAMILY",
    "GPT2",
    "GPT2_SITES",
    "GPT2_SIZES",
    "HF_LAYOUT",
    "NANOGPT_LAYOUT",
    "SHAKESPEARE_DATA_CFG",
    "TEXT_DATA_CFG",
    "Activation",
    "from_nanogpt",
    "from_transformers",
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
    "to_nanogpt",
    "to_transformers",
    "to_transformers_state_dict",
]
