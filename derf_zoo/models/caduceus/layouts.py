"""Foreign weight layouts of the Caduceus family: the public kuleshov-group/caduceus layout, imported and exported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from derf_zoo.models.caduceus.model import Caduceus
from derf_zoo.models.caduceus.rcps import RCPSWrapper
from derf_zoo.weights import Layout, Rename, Tied, load_layout
from derf_zoo.weights.checkpoint_file import read_weights

__all__ = [
    "CADUCEUS_FUSED_PS_LAYOUT",
    "CADUCEUS_LAYOUT",
    "CADUCEUS_LAYOUTS",
    "caduceus_layout",
    "from_caduceus",
    "to_caduceus",
]

_TABLE = "caduceus.backbone.embeddings.word_embeddings."
_LAYER = "caduceus.backbone.layers.{i}."

#: ``bidirectional_weight_tie=True`` (the public checkpoints): ``BiMambaWrapper`` holds the forward direction's
#: in/out projections under the reverse direction's names too (``mixer.`` or PS's ``mixer.submodule.``).
_TIED_DIRECTIONS = (
    Tied(_LAYER + "{rest}.mamba_rev.in_proj.{p}", same_as=_LAYER + "{rest}.mamba_fwd.in_proj.{p}"),
    Tied(_LAYER + "{rest}.mamba_rev.out_proj.{p}", same_as=_LAYER + "{rest}.mamba_fwd.out_proj.{p}"),
)
#: The LM head tied to the embedding: Caduceus-Ph's ``Linear``; Caduceus-PS's ``RCPSLMHead`` (its ``lm_head`` and
#: the complement map both the embedding and the head register).
_TIED_HEAD = (
    Tied("lm_head.weight", same_as=_TABLE + "weight"),
    Tied("lm_head.lm_head.weight", same_as=_TABLE + "embedding.weight"),
    Tied("lm_head.complement_map", same_as=_TABLE + "complement_map"),
)
#: Caduceus-PS saved with ``fused_add_norm=True``: the block norm and ``norm_f`` are plain norms (no
#: ``RCPSAddNormWrapper``), one norm shared by both halves, which our RCPS norm wraps (``.submodule``).
_FUSED_PS_NORMS = (
    Rename("backbone.blocks.{i}.norm1.submodule.{p}", _LAYER + "norm.{p}"),
    Rename("backbone.norm.submodule.{p}", "caduceus.backbone.norm_f.{p}"),
)
_NAMES = (
    Rename("word_embeddings.{rest}", _TABLE + "{rest}"),
    Rename("backbone.blocks.{i}.norm1.{rest}", _LAYER + "norm.{rest}"),
    Rename("backbone.blocks.{i}.mixer.{rest}", _LAYER + "mixer.{rest}"),
    Rename("backbone.norm.{rest}", "caduceus.backbone.norm_f.{rest}"),
)


def caduceus_layout(fused_ps: bool = False, weight_tie: bool = True) -> Layout:
    """The ``CaduceusForMaskedLM`` layout (``kuleshov-group/caduceus-{ph,ps}``) of a model with these options.

    Args:
        fused_ps: Caduceus-PS weights saved with ``fused_add_norm=True`` (norms without ``.submodule``; such a
            model is ours with ``rcps_swap_halves=True``).
        weight_tie: ``bidirectional_weight_tie`` (the reverse direction's projections are copies of the forward
            one's); ``False`` gives each direction its own.
    """
    options = [text for on, text in ((fused_ps, "fused_add_norm Caduceus-PS"),
                                     (not weight_tie, "untied directions")) if on]  # fmt: skip
    name = "caduceus CaduceusForMaskedLM" + (f" ({', '.join(options)})" if options else "")
    return Layout(name, (*(_TIED_DIRECTIONS if weight_tie else ()), *_TIED_HEAD,
                         *(_FUSED_PS_NORMS if fused_ps else ()), *_NAMES))  # fmt: skip


#: The public checkpoints' layout (Caduceus-Ph and -PS, tied directions): the family's ``"caduceus"`` layout.
CADUCEUS_LAYOUT = caduceus_layout()
#: Caduceus-PS saved with ``fused_add_norm=True``: ``"caduceus_fused_ps"``.
CADUCEUS_FUSED_PS_LAYOUT = caduceus_layout(fused_ps=True)
#: Every layout the family registers, by name.
CADUCEUS_LAYOUTS = {
    "caduceus": CADUCEUS_LAYOUT,
    "caduceus_fused_ps": CADUCEUS_FUSED_PS_LAYOUT,
    "caduceus_untied": caduceus_layout(weight_tie=False),
    "caduceus_untied_fused_ps": caduceus_layout(fused_ps=True, weight_tie=False),
}

#: A norm of the fused PS layout: a block's ``norm`` or ``norm_f`` holding its parameters directly.
_PLAIN_NORM = re.compile(r"^caduceus\.backbone\.(?:layers\.\d+\.norm|norm_f)\.[^.]+$")


def from_caduceus(state_dict: Mapping[str, Tensor] | str | Path, **model_args: Any) -> Caduceus:
    """Build a :class:`Caduceus` and load a ``CaduceusForMaskedLM`` state dict (:func:`caduceus_layout`) into it.

    ``rcps`` is read from the weights when not given (an ``RCPSEmbedding`` has ``...word_embeddings.embedding``);
    a Caduceus-PS state dict saved with ``fused_add_norm=True`` (norms without ``.submodule``) gets
    ``rcps_swap_halves=True``, the block that layout was trained with. ``bidirectional_weight_tie=False`` reads
    each direction's own projections (the default checks that the reverse ones are copies). Norm sites of
    another kind than the weights' (``norm="derf"`` over RMSNorm weights) start fresh.

    Args:
        state_dict: the reference's weights (``caduceus.backbone...``, ``lm_head...``), or the path of a file
            holding them (``.safetensors``, a ``torch.save``'d state dict, or a training checkpoint whose network
            is under ``model_ema``/``ema``/``model``), read weights-only
            (:func:`~derf_zoo.weights.checkpoint_file.read_weights`).
        **model_args: :class:`Caduceus` arguments (``d_model``, ``n_layer``, ``d_state``, ``norm``...).

    Raises:
        LayoutError: keys no rule matches, or tied copies (reverse projections, LM head) that differ.
        WeightsMismatchError: keys missing or left over (each listed), or other shapes; nothing is loaded.
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = read_weights(state_dict, who="from_caduceus")
    rcps = model_args.pop("rcps", any(".word_embeddings.embedding." in k for k in state_dict))
    fused_ps = rcps and any(_PLAIN_NORM.match(k) for k in state_dict)
    model_args.setdefault("rcps_swap_halves", fused_ps)
    layout = caduceus_layout(fused_ps, model_args.get("bidirectional_weight_tie", True))
    model = Caduceus(rcps=rcps, **model_args)
    return load_layout(model, state_dict, layout, source="the Caduceus state dict", fresh_norms=True)


def to_caduceus(model: Caduceus) -> dict[str, Tensor]:
    """Our weights in the reference's ``CaduceusForMaskedLM`` layout, tied copies written out.

    A model with ``rcps_swap_halves=True`` is the reference's ``fused_add_norm`` Caduceus-PS and is written in
    that layout (plain norms), so that :func:`from_caduceus` gives it back; others use non-fused names. The
    inverse of :func:`from_caduceus`.

    Raises:
        ValueError: a model with a ``head_bias``, which the reference's LM head has no place for.
    """
    if model.head_bias is not None:
        raise ValueError("to_caduceus: this model has a head_bias (its logits are the tied head's plus a bias), which "
                         "the reference's CaduceusForMaskedLM has no place for; exporting without it would change its "
                         "outputs.")
    mixer = model.backbone.blocks[0].mixer
    bimamba = mixer.submodule if isinstance(mixer, RCPSWrapper) else mixer
    return caduceus_layout(model.rcps_swap_halves, bimamba.weight_tie).to_theirs(model.state_dict())
