"""Foreign weight layouts of the HyenaDNA family: the public LongSafari/hyenadna layout, imported and exported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from derf_zoo.models.hyenadna.hyena import HyenaOperator
from derf_zoo.models.hyenadna.model import HyenaDNA
from derf_zoo.weights import Layout, Rename, Tied, load_layout
from derf_zoo.weights.checkpoint_file import read_weights

__all__ = [
    "HYENADNA_CHECKPOINTED_LAYOUT",
    "HYENADNA_LAYOUT",
    "from_hyenadna",
    "hyenadna_layout",
    "to_hyenadna",
]

#: The filter MLP of the public checkpoints (and the reference's default): 2 hidden-to-hidden layers.
_PUBLIC_INNER_MLPS = 2


def hyenadna_layout(num_inner_mlps: int = _PUBLIC_INNER_MLPS, checkpointed: bool = False) -> Layout:
    """The public HyenaDNA layout (``ConvLMHeadModel``: ``backbone.layers.N``, ``backbone.ln_f``, a tied
    ``lm_head``) for a filter MLP of ``num_inner_mlps`` hidden layers.

    One table per filter depth because the reference lists its one shared ``Sin`` once per use:
    ``implicit_filter.{1,3,...}.freq`` are one tensor (our ``filter_fn.sin.freq``; the odd copies are
    :class:`Tied`), and which copies exist is the depth. ``checkpointed=True`` is the naming of models trained with
    ``checkpoint_mixer``/``checkpoint_mlp`` (``.mixer.layer.``, ``.mlp.layer.``). The Lightning checkpoint's
    ``model.`` and the ``-hf`` port's ``hyena.`` prefixes are stripped.
    """
    layer = "backbone.layers.{i}."
    mixer = layer + ("mixer.layer." if checkpointed else "mixer.")
    mlp = layer + ("mlp.layer." if checkpointed else "mlp.")
    freq = mixer + "filter_fn.implicit_filter.{}.freq"
    return Layout(f"HyenaDNA ConvLMHeadModel{' (checkpointed sub-layers)' if checkpointed else ''}", (
        Rename("embeddings.weight", "backbone.embeddings.word_embeddings.weight"),
        Tied("lm_head.weight", same_as="backbone.embeddings.word_embeddings.weight"),
        Rename("backbone.blocks.{i}.mixer.filter_fn.sin.freq", freq.replace("{}", "1")),
        *(Tied(freq.replace("{}", str(j)), same_as=freq.replace("{}", "1"))
          for j in range(3, 2 * num_inner_mlps + 2, 2)),
        Rename("backbone.blocks.{i}.mixer.{rest}", mixer + "{rest}"),
        Rename("backbone.blocks.{i}.mlp.{rest}", mlp + "{rest}"),
        Rename("backbone.blocks.{i}.norm1.{rest}", layer + "norm1.{rest}"),
        Rename("backbone.blocks.{i}.norm2.{rest}", layer + "norm2.{rest}"),
        Rename("backbone.norm.{rest}", "backbone.ln_f.{rest}"),
    ), strip_prefixes=("model.", "hyena."))  # fmt: skip


#: The public checkpoints' layout (``LongSafari/hyenadna-*``: the family's ``"hyenadna"`` layout).
HYENADNA_LAYOUT = hyenadna_layout()
#: The same, trained with gradient checkpointing (sub-layers under ``.layer.``): ``"hyenadna_checkpointed"``.
HYENADNA_CHECKPOINTED_LAYOUT = hyenadna_layout(checkpointed=True)

_FILTER_LINEAR = re.compile(r"layers\.0\.mixer\.(?:layer\.)?filter_fn\.implicit_filter\.(\d+)\.weight$")


def _layout_of(state_dict: Mapping[str, Tensor]) -> Layout:
    """The layout a HyenaDNA state dict is in: its sub-layer naming and its filter MLP depth (from the keys)."""
    checkpointed = any(".mixer.layer." in k or ".mlp.layer." in k for k in state_dict)
    linears = sum(1 for k in state_dict if _FILTER_LINEAR.search(k))
    if linears < 2:
        raise ValueError("from_hyenadna: this does not look like a HyenaDNA state dict: it has no "
                         "backbone.layers.0.mixer.filter_fn.implicit_filter.N.weight keys.")  # fmt: skip
    if linears - 2 == _PUBLIC_INNER_MLPS:
        return HYENADNA_CHECKPOINTED_LAYOUT if checkpointed else HYENADNA_LAYOUT
    return hyenadna_layout(linears - 2, checkpointed)


def _args_from_hyenadna(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Shapes of a (mapped) HyenaDNA state dict -> model arguments."""
    needed = ("embeddings.weight", "backbone.blocks.0.mixer.in_proj.weight", "backbone.blocks.0.mlp.fc1.weight",
              "backbone.blocks.0.mixer.filter_fn.implicit_filter.0.weight")  # fmt: skip
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ValueError(f"from_hyenadna: this does not look like a HyenaDNA state dict; after the key map it lacks "
                         f"{missing}.")  # fmt: skip
    vocab, d_model = sd["embeddings.weight"].shape
    prefix = "backbone.blocks.0.mixer."
    filter_linears = sorted(int(m.group(1)) for k in sd
                            if (m := re.match(re.escape(prefix) + r"filter_fn\.implicit_filter\.(\d+)\.weight$", k)))
    first = sd[prefix + "filter_fn.implicit_filter.0.weight"]
    mixer = {"name": "hyena", "order": sd[prefix + "in_proj.weight"].shape[0] // d_model - 1,
             "filter_order": first.shape[0], "emb_dim": first.shape[1],
             "short_filter_order": sd[prefix + "short_filter.weight"].shape[-1],
             "num_inner_mlps": len(filter_linears) - 2}  # fmt: skip
    args: dict[str, Any] = {
        "vocab_size": vocab,
        "pad_vocab_size_multiple": 1,
        "d_model": d_model,
        "n_layer": 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks.")),
        "d_inner": sd["backbone.blocks.0.mlp.fc1.weight"].shape[0],
        "mixer": mixer,
    }
    if prefix + "filter_fn.pos_emb.z" in sd:
        args["max_seq_len"] = sd[prefix + "filter_fn.pos_emb.z"].shape[1]
    return args


def from_hyenadna(state_dict: Mapping[str, Tensor] | str | Path, **model_args: Any) -> HyenaDNA:
    """Build a :class:`HyenaDNA` holding a state dict of the public HyenaDNA layout (:data:`HYENADNA_LAYOUT`).

    ``state_dict`` may be the path of a file holding it (``.safetensors``, a ``torch.save``'d state dict, or a
    training checkpoint whose network is under ``model_ema``/``ema``/``model``), read weights-only
    (:func:`~derf_zoo.weights.checkpoint_file.read_weights`).

    Width, depth, MLP width, vocabulary rows (already padded: 16 for the public checkpoints), Hyena order, filter
    MLP shape and the max length (from the positional buffer ``pos_emb.z``) are read from the weights;
    ``model_args`` override them (``norm="derf"`` imports into Derf sites, whose fresh norms are kept;
    ``max_seq_len=`` is needed when the state dict has no ``pos_emb`` buffers). The fixed buffers (``pos_emb.z``,
    ``pos_emb.t``, ``modulation.deltas``) are loaded when present and rebuilt otherwise. The reference's
    ``modulation_shift`` is not in the weights: the training code uses 0.0 (our default), the standalone/HF port
    0.05 (pass ``mixer={"name": "hyena", ..., "modulation_shift": 0.05}`` to match it).

    Raises:
        ValueError: not a HyenaDNA state dict, keys no rule of the layout matches, tied or shared tensors that
            differ (:class:`~derf_zoo.weights.LayoutError`), or weights missing, unexpected or misshapen (the
            message lists them; nothing is loaded then).
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = read_weights(state_dict, who="from_hyenadna")
    sd = _layout_of(state_dict).to_ours(state_dict)
    args = _args_from_hyenadna(sd)
    if isinstance(model_args.get("mixer"), Mapping):  # merge a partial Hyena spec into the one read from weights
        model_args = {**model_args, "mixer": {**args["mixer"], **model_args["mixer"]}}
    args = {**args, **model_args}
    if "max_seq_len" not in args:
        raise ValueError("from_hyenadna: the state dict has no pos_emb buffers to read the max length from; pass "
                         "max_seq_len=... (the training length + 2 for the public checkpoints).")  # fmt: skip
    model = HyenaDNA(**args)
    model.model_args = args
    # The fixed buffers are rebuilt exactly at init, so weights without them may leave them to the model.
    buffers = tuple(k for k in model.state_dict() if k.endswith((".pos_emb.z", ".pos_emb.t", ".modulation.deltas")))
    return load_layout(model, sd, None, source="from_hyenadna: the HyenaDNA state dict", fresh_norms=True,
                       may_be_missing=buffers)


def to_hyenadna(model: HyenaDNA) -> dict[str, Tensor]:
    """Our weights in the public HyenaDNA layout (standalone ``backbone.`` keys; the tied ``lm_head.weight`` and
    every use of the shared sine's ``freq`` written out, the fixed buffers included), as the reference's
    ``ConvLMHeadModel.load_state_dict(strict=True)`` takes them.

    A LayerNorm model is the reference's model; other norms keep their own parameter names (``alpha``, ...) under
    the reference's norm names, as the authors' Derf patch of HyenaDNA does. The inverse of :func:`from_hyenadna`.

    Raises:
        ValueError: a mixer other than Hyena, or a ``head_bias`` (the layout has no place for their weights).
    """
    mixer = model.backbone.blocks[0].mixer
    if not isinstance(mixer, HyenaOperator):
        raise ValueError(f"to_hyenadna: the public layout holds Hyena mixers, but this model's mixer is "
                         f"{type(mixer).__name__}.")  # fmt: skip
    if model.head_bias is not None:
        raise ValueError("to_hyenadna: this model has a head_bias (its logits are the tied head's plus a bias), which "
                         "the public ConvLMHeadModel has no place for; exporting without it would change its outputs.")
    layout = hyenadna_layout(len(mixer.filter_fn.implicit_filter) - 2)
    return layout.to_theirs(model.state_dict())
