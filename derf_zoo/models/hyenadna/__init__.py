"""HyenaDNA (Nguyen et al., 2023): a causal DNA language model of Hyena mixers on the shared backbone.

Architecture after HazyResearch/hyena-dna (``src/models/sequence/long_conv_lm.py``, ``standalone_hyenadna.py``):
token embedding (vocabulary padded to ``pad_vocab_size_multiple``, 12 -> 16 in the public checkpoints), embedding
dropout, ``n_layer`` pre-norm blocks ``x + hyena(norm1(x))`` then ``x + mlp(norm2(x))`` (MLP ``d_inner = 4 d``,
tanh-GELU), a final norm and an LM head tied to the embedding. The reference's block is written "dropout -> add
-> LN -> mixer" to fuse kernels; with its residual dropout 0 that is exactly this pre-norm block. Its
``residual_in_fp32`` only matters under half precision; here the residual stream is the model's dtype.

Norm sites (the slot): ``attn`` (before the Hyena mixer, the backbone's name for the mixer sub-layer's norm),
``mlp`` and ``final``; LayerNorm (eps 1e-5) by default. The Derf paper (shared/PAPER.md §3.4) replaces every
``nn.LayerNorm`` of HyenaDNA by Derf with alpha 0.5, shift 0.

:func:`from_hyenadna` imports a state dict of the public ``LongSafari/hyenadna-*`` layout (the Lightning
``weights.ckpt``'s ``model.`` keys, the standalone ``backbone.`` keys or the ``-hf`` port's ``hyena.`` keys);
:data:`HYENADNA_LAYOUT` is that layout as one declared table (the family's ``"hyenadna"`` layout; models trained with
gradient checkpointing: ``"hyenadna_checkpointed"``) and :func:`to_hyenadna` exports back to it.
"""

from __future__ import annotations

from derf_zoo.models.hyenadna.entrypoints import (
    CARD_EXAMPLE,
    CARD_INPUT,
    DNA_DATA_CFG,
    FAMILY,
    hyenadna_nano,
    hyenadna_nano_derf,
    hyenadna_nano_ln,
    hyenadna_small_32k,
    hyenadna_small_32k_derf,
    hyenadna_small_32k_ln,
    hyenadna_tiny_1k,
    hyenadna_tiny_1k_derf,
    hyenadna_tiny_1k_ln,
)
from derf_zoo.models.hyenadna.layouts import (
    HYENADNA_CHECKPOINTED_LAYOUT,
    HYENADNA_LAYOUT,
    from_hyenadna,
    hyenadna_layout,
    to_hyenadna,
)
from derf_zoo.models.hyenadna.model import (
    DNA_VOCAB_SIZE,
    HYENADNA_SITES,
    HyenaDNA,
)

__all__ = [
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "DNA_DATA_CFG",
    "DNA_VOCAB_SIZE",
    "FAMILY",
    "HYENADNA_CHECKPOINTED_LAYOUT",
    "HYENADNA_LAYOUT",
    "HYENADNA_SITES",
    "HyenaDNA",
    "from_hyenadna",
    "hyenadna_layout",
    "hyenadna_nano",
    "hyenadna_nano_derf",
    "hyenadna_nano_ln",
    "hyenadna_small_32k",
    "hyenadna_small_32k_derf",
    "hyenadna_small_32k_ln",
    "hyenadna_tiny_1k",
    "hyenadna_tiny_1k_derf",
    "hyenadna_tiny_1k_ln",
    "to_hyenadna",
]
