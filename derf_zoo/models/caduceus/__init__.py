"""Caduceus (Schiff et al., 2024): bidirectional, reverse-complement aware Mamba DNA language models.

After ``caduceus/modeling_caduceus.py`` and ``modeling_rcps.py`` (kuleshov-group/caduceus). Blocks have no MLP:
``x + BiMamba(norm(x))`` (the reference's "Add -> Norm -> Mixer" ``Block`` is the same function), then the final
norm and an LM head tied to the token embedding. The norms are RMSNorm (eps 1e-5) and fill the norm slot:
``norm="derf"`` puts Derf with weight and bias in every one of them, as the authors' DNA patch does. The
reference's fused add+norm Triton path is not reproduced (it would call an RMSNorm kernel whatever module sits
in the slot).

* **Caduceus-Ph** (``rcps=False``): no parameter sharing; RC equivariance only post hoc, by averaging the logits
  of the reverse complement mapped back (``rc_average=True`` at inference, or :meth:`Caduceus.rc_averaged_logits`).
* **Caduceus-PS** (``rcps=True``): RC-equivariant by construction (:mod:`derf_zoo.models.caduceus.rcps`): the hidden
  state is ``2 * d_model`` wide (a forward and a reverse-complement half), the embedding, every mixer and norm
  and the LM head share their weights across the halves. ``d_model`` is the width of one half, as in the
  public ``kuleshov-group/caduceus-ps_*_d_model-118`` checkpoints (their hidden state is 236 wide).
"""

from __future__ import annotations

from derf_zoo.models.caduceus.entrypoints import (
    CARD_EXAMPLE,
    CARD_INPUT,
    DNA_DATA_CFG,
    FAMILY,
    caduceus_nano,
    caduceus_nano_derf,
    caduceus_nano_rmsnorm,
    caduceus_ph_1k,
    caduceus_ph_1k_derf,
    caduceus_ph_1k_rmsnorm,
    caduceus_ps_1k,
    caduceus_ps_1k_derf,
    caduceus_ps_1k_rmsnorm,
)
from derf_zoo.models.caduceus.layouts import (
    CADUCEUS_FUSED_PS_LAYOUT,
    CADUCEUS_LAYOUT,
    CADUCEUS_LAYOUTS,
    caduceus_layout,
    from_caduceus,
    to_caduceus,
)
from derf_zoo.models.caduceus.model import (
    DNA_COMPLEMENT,
    DNA_VOCAB_SIZE,
    NORM_SITES,
    PAD_VOCAB_SIZE_MULTIPLE,
    Caduceus,
    dna_complement_map,
)

__all__ = [
    "CADUCEUS_FUSED_PS_LAYOUT",
    "CADUCEUS_LAYOUT",
    "CADUCEUS_LAYOUTS",
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "DNA_COMPLEMENT",
    "DNA_DATA_CFG",
    "DNA_VOCAB_SIZE",
    "FAMILY",
    "NORM_SITES",
    "PAD_VOCAB_SIZE_MULTIPLE",
    "Caduceus",
    "caduceus_layout",
    "caduceus_nano",
    "caduceus_nano_derf",
    "caduceus_nano_rmsnorm",
    "caduceus_ph_1k",
    "caduceus_ph_1k_derf",
    "caduceus_ph_1k_rmsnorm",
    "caduceus_ps_1k",
    "caduceus_ps_1k_derf",
    "caduceus_ps_1k_rmsnorm",
    "dna_complement_map",
    "from_caduceus",
    "to_caduceus",
]
