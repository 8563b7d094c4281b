"""Foreign weight layouts of the Caduceus family: the public kuleshov-group/caduceus layout, imported and exported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from derf_zoo.hub.state_dict import WeightsMismatchError, load_into
from derf_zoo.models.caduceus.model import Caduceus
from derf_zoo.models.caduceus.rcps import RCPSWrapper

__all__ = ["caduceus_to_zoo_key", "from_caduceus", "to_caduceus"]


def caduceus_to_zoo_key(key: str) -> str:
    """Map a key of the public ``kuleshov-group/caduceus-{ph,ps}`` layout (``CaduceusForMaskedLM``) to ours.

    ``caduceus.backbone.embeddings.word_embeddings.*`` -> ``word_embeddings.*``; ``caduceus.backbone.layers.N.``
    -> ``backbone.blocks.N.`` with ``norm`` -> ``norm1``; ``caduceus.backbone.norm_f`` -> ``backbone.norm``. The
    reference's tied copies (``mamba_rev.{in,out}_proj``, the LM head's weight, the head's complement map) map
    onto the one tensor we keep. Caduceus-PS checkpoints saved with ``fused_add_norm=True`` name their norms
    without ``.submodule``: load those with :func:`from_caduceus`, which knows the model.
    """
    for old, new in (
        ("caduceus.backbone.embeddings.word_embeddings.", "word_embeddings."),
        ("caduceus.backbone.norm_f.", "backbone.norm."),
        ("lm_head.lm_head.weight", "word_embeddings.embedding.weight"),
        ("lm_head.complement_map", "word_embeddings.complement_map"),
        ("lm_head.weight", "word_embeddings.weight"),
    ):
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith("caduceus.backbone.layers."):
        index, rest = key[len("caduceus.backbone.layers."):].split(".", 1)
        if rest.startswith("norm."):
            rest = "norm1." + rest[len("norm."):]
        for proj in ("in_proj.", "out_proj."):
            rest = rest.replace("mamba_rev." + proj, "mamba_fwd." + proj)
        return f"backbone.blocks.{index}.{rest}"
    return key




def from_caduceus(state_dict: Mapping[str, Tensor], **model_args: Any) -> Caduceus:
    """Build a :class:`Caduceus` and load a ``CaduceusForMaskedLM`` state dict (the HF layout) into it.

    ``rcps`` is read from the weights when not given (an ``RCPSEmbedding`` has ``...word_embeddings.embedding``);
    a Caduceus-PS state dict saved with ``fused_add_norm=True`` (norms without ``.submodule``) gets
    ``rcps_swap_halves=True``, the block that layout was trained with.

    Args:
        state_dict: the reference's weights (``caduceus.backbone...``, ``lm_head...``).
        **model_args: :class:`Caduceus` arguments (``d_model``, ``n_layer``, ``d_state``, ``norm``...).

    Raises:
        WeightsMismatchError: keys missing or left over (each listed), or other shapes; nothing is loaded.
    """
    keys = set(state_dict)
    rcps = model_args.pop("rcps", any(".word_embeddings.embedding." in k for k in keys))
    fused_ps = rcps and any(k.startswith("caduceus.backbone.layers.") and ".norm.weight" in k for k in keys)
    model_args.setdefault("rcps_swap_halves", fused_ps)
    model = Caduceus(rcps=rcps, **model_args)

    def key_map(key: str) -> str:
        key = caduceus_to_zoo_key(key)
        if fused_ps:  # the fused layout's plain norm is one norm shared by both halves: ours wraps it
            for site in (".norm1.", "backbone.norm."):
                if site in key and ".submodule." not in key:
                    return key.replace(site, site + "submodule.")
        return key

    tied = [(a, b) for a, b in _tied_copies(keys) if not torch.equal(state_dict[a], state_dict[b])]
    if tied:
        raise WeightsMismatchError(f"from_caduceus: tied weights differ in the state dict ({tied[:4]}); this "
                                   "model shares them (bidirectional_weight_tie, tied LM head).")  # fmt: skip
    load_into(model, state_dict, source="the Caduceus state dict", key_map=key_map)
    return model


def _tied_copies(keys: set[str]) -> list[tuple[str, str]]:
    """Pairs of reference keys that hold the same tensor when tied (both present)."""
    pairs = []
    for k in keys:
        for proj in ("in_proj.", "out_proj."):
            if ".mamba_rev." + proj in k and k.replace("mamba_rev.", "mamba_fwd.") in keys:
                pairs.append((k, k.replace("mamba_rev.", "mamba_fwd.")))
    emb = "caduceus.backbone.embeddings.word_embeddings."
    for head, table in (("lm_head.weight", emb + "weight"), ("lm_head.lm_head.weight", emb + "embedding.weight")):
        if head in keys and table in keys:
            pairs.append((head, table))
    return pairs


def to_caduceus(model: Caduceus) -> dict[str, Tensor]:
    """Our weights in the reference's ``CaduceusForMaskedLM`` layout (non-fused norms), tied copies written out.

    The inverse of :func:`caduceus_to_zoo_key`; used to test the import, and to hand weights to the reference.
    """
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("word_embeddings."):
            out["caduceus.backbone.embeddings." + key] = value
        elif key.startswith("backbone.norm."):
            out["caduceus.backbone.norm_f." + key[len("backbone.norm."):]] = value
        elif key.startswith("backbone.blocks."):
            index, rest = key[len("backbone.blocks."):].split(".", 1)
            rest = "norm." + rest[len("norm1."):] if rest.startswith("norm1.") else rest
            out[f"caduceus.backbone.layers.{index}.{rest}"] = value
            mixer = model.backbone.blocks[int(index)].mixer
            bimamba = mixer.submodule if isinstance(mixer, RCPSWrapper) else mixer
            if bimamba.weight_tie and (".mamba_fwd.in_proj." in rest or ".mamba_fwd.out_proj." in rest):
                # The reference's reverse Mamba holds the same Parameter under its own name.
                out[f"caduceus.backbone.layers.{index}.{rest.replace('mamba_fwd.', 'mamba_rev.')}"] = value
        else:
            raise KeyError(f"to_caduceus: no reference name for {key!r}.")
    if model.rcps:
        out["lm_head.lm_head.weight"] = model.embedding_weight.detach()
        out["lm_head.complement_map"] = model.complement_map
    else:
        out["lm_head.weight"] = model.embedding_weight.detach()
    return out
