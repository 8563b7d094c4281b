"""Foreign weight layouts of the HyenaDNA family: the public LongSafari/hyenadna layout, imported and exported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.hub.state_dict import load_into
from derf_zoo.models.hyenadna.hyena import HyenaOperator  # noqa: F401  (registers the "hyena" mixer)
from derf_zoo.models.hyenadna.model import HyenaDNA
from derf_zoo.norms.sites import is_norm

__all__ = ["from_hyenadna", "hyenadna_to_zoo_key"]


_LAYER_RE = re.compile(r"^backbone\.layers\.(\d+)\.(.*)$")
_FREQ_RE = re.compile(r"filter_fn\.implicit_filter\.\d+\.freq$")


def hyenadna_to_zoo_key(key: str) -> str:
    """Map a key of the public HyenaDNA layout to ours.

    Accepts the Lightning checkpoint's ``model.`` prefix, the ``-hf`` port's ``hyena.`` prefix, and the
    ``.mixer.layer.`` / ``.mlp.layer.`` names of models trained with gradient checkpointing. The tied
    ``lm_head.weight`` maps onto the embedding; every ``implicit_filter.<odd>.freq`` (one shared sine) onto
    ``filter_fn.sin.freq``.
    """
    for prefix in ("model.", "hyena."):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    key = key.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp.")
    if key in ("backbone.embeddings.word_embeddings.weight", "lm_head.weight"):
        return "embeddings.weight"
    if key.startswith("backbone.ln_f."):
        return "backbone.norm." + key[len("backbone.ln_f."):]
    m = _LAYER_RE.match(key)
    if m:
        i, rest = m.groups()
        return f"backbone.blocks.{i}.{_FREQ_RE.sub('filter_fn.sin.freq', rest)}"
    return key



def _shared_tensors(sd: dict[str, Tensor], names: list[str], what: str) -> Tensor:
    """One tensor the reference stores under several names (tied or shared); they must agree."""
    first = sd[names[0]]
    differ = [n for n in names[1:] if sd[n].shape != first.shape or not torch.equal(sd[n], first)]
    if differ:
        raise ValueError(f"from_hyenadna: {what} should be one tensor, but {names[0]!r} differs from {differ}; "
                         "these weights cannot be imported exactly.")  # fmt: skip
    return first


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


def from_hyenadna(state_dict: Mapping[str, Tensor], **model_args: Any) -> HyenaDNA:
    """Build a :class:`HyenaDNA` holding a state dict of the public HyenaDNA layout.

    Width, depth, MLP width, vocabulary rows (already padded: 16 for the public checkpoints), Hyena order, filter
    MLP shape and the max length (from the positional buffer ``pos_emb.z``) are read from the weights;
    ``model_args`` override them (``norm="derf"`` imports into Derf sites, whose fresh norms are kept;
    ``max_seq_len=`` is needed when the state dict has no ``pos_emb`` buffers). The fixed buffers (``pos_emb.z``,
    ``pos_emb.t``, ``modulation.deltas``) are loaded when present and rebuilt otherwise. The reference's
    ``modulation_shift`` is not in the weights: the training code uses 0.0 (our default), the standalone/HF port
    0.05 (pass ``mixer={"name": "hyena", ..., "modulation_shift": 0.05}`` to match it).

    Raises:
        ValueError: not a HyenaDNA state dict, tied or shared tensors that differ, or weights missing,
            unexpected or misshapen (the message lists them; nothing is loaded then).
    """
    groups: dict[str, list[str]] = {}
    for key in state_dict:
        groups.setdefault(hyenadna_to_zoo_key(key), []).append(key)
    sd = {new: _shared_tensors(dict(state_dict), old, f"{new!r} (from {old})") if len(old) > 1 else state_dict[old[0]]
          for new, old in groups.items()}  # fmt: skip
    args = _args_from_hyenadna(sd)
    if isinstance(model_args.get("mixer"), Mapping):  # merge a partial Hyena spec into the one read from weights
        model_args = {**model_args, "mixer": {**args["mixer"], **model_args["mixer"]}}
    args = {**args, **model_args}
    if "max_seq_len" not in args:
        raise ValueError("from_hyenadna: the state dict has no pos_emb buffers to read the max length from; pass "
                         "max_seq_len=... (the training length + 2 for the public checkpoints).")  # fmt: skip
    model = HyenaDNA(**args)
    model.model_args = args
    fresh = model.state_dict()
    buffers = (".pos_emb.z", ".pos_emb.t", ".modulation.deltas")
    for key, value in fresh.items():  # rebuild the fixed buffers the weights do not carry
        if key.endswith(buffers) and key not in sd:
            sd[key] = value
    # A norm site imported into another norm (Derf, DyT, ...) starts fresh: LayerNorm's weights do not carry over.
    fresh_norms = tuple(name + "." for name, m in model.named_modules()
                        if is_norm(m) and not isinstance(m, nn.LayerNorm))  # fmt: skip
    sd = {k: v for k, v in sd.items() if not k.startswith(fresh_norms)} if fresh_norms else sd
    load_into(model, sd, source="from_hyenadna: the HyenaDNA state dict", may_be_missing=fresh_norms)
    return model
