"""Parameter groups shared by every task: no weight decay on 1-D parameters and on parameters a model marks.

alpha, shift, norm weights/biases and every bias are 1-D (ndim < 2); decaying them pulls alpha
towards 0 (flattening the point-wise function) and is not what the paper's optimizers do
(official ViT code: ``len(shape) == 1`` -> no decay). The official DNA code (HyenaDNA/Caduceus training with
the Derf patch) does decay Derf's alpha, shift and weight; we keep them undecayed in every family, DNA included,
because decaying them measured worse on the nano DNA models (the probe behind issue 18).

A model marks more parameters two ways, both honoured here:

- ``no_weight_decay()`` returning parameter names (timm convention: ``pos_embed``, ``cls_token``), on the model
  or on any submodule (names relative to it);
- a ``_no_weight_decay = True`` attribute on the parameter itself (mamba_ssm convention: Mamba's ``A_log``,
  which is 2-D, and ``D``), so a layer can mark its own parameters wherever it sits in a model.

With ``layer_decay`` the two groups are split further by layer, each group carrying an ``lr_scale``
(:mod:`derf_zoo.tasks.layer_decay`), which :class:`derf_zoo.tasks.schedules.Schedule` applies.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from derf_zoo.tasks.layer_decay import check_layer_decay, layer_ids

__all__ = ["no_decay_names", "param_groups"]


def _named_no_decay(model: nn.Module) -> set[str]:
    """Every ``no_weight_decay()`` name of ``model`` and of its submodules, prefixed with the submodule's path, so a
    backbone a task wraps (a classifier around HyenaDNA, a teacher beside a student) keeps its own list."""
    names: set[str] = set()
    for path, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names |= {f"{path}.{n}" if path else n for n in fn()}
    return names


def no_decay_names(model: nn.Module, extra_no_decay: Iterable[str] = ()) -> list[str]:
    """Names of the trainable parameters of ``model`` that :func:`param_groups` keeps out of weight decay."""
    skip = _named_no_decay(model) | set(extra_no_decay)
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.ndim < 2 or name in skip or getattr(p, "_no_weight_decay", False))]  # fmt: skip


def param_groups(model: nn.Module, weight_decay: float | None, extra_no_decay: Iterable[str] = (),
                 layer_decay: float | None = None) -> list[dict]:  # fmt: skip
    """Split the trainable parameters of ``model`` into a decay and a no-decay group (per layer with ``layer_decay``).

    No decay: every parameter with ``ndim < 2``, every name a ``no_weight_decay()`` of the model or of a submodule
    lists (relative to that submodule), every parameter
    tagged ``_no_weight_decay = True``, and ``extra_no_decay``.

    Args:
        model: the network.
        weight_decay: weight decay of the decay group; None leaves it to the optimizer's own default
            (what a recipe sets in the optimizer's ``init_args``).
        extra_no_decay: more parameter names (exact) to exclude from decay.
        layer_decay: None (default): two groups, as above. A number in (0, 1]: timm's layer-wise lr decay, one
            decay and one no-decay group per layer id (:func:`derf_zoo.tasks.layer_decay.layer_ids`, in the order
            timm builds them), each with ``lr_scale = layer_decay ** (num_layers + 1 - layer_id)``; the schedule
            (or, without one, the task) multiplies the group's learning rate by it.

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``,
        ready for any torch optimizer (the first group has no ``weight_decay`` key when it is None); with
        ``layer_decay``, the non-empty ``{"params", "weight_decay", "lr_scale"}`` groups of every layer.
    """
    check_layer_decay(layer_decay)
    skip = set(no_decay_names(model, extra_no_decay))
    if layer_decay is not None:
        return _layer_decay_groups(model, weight_decay, skip, layer_decay)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    decay_group: dict = {"params": decay}
    if weight_decay is not None:
        decay_group["weight_decay"] = weight_decay
    return [decay_group, {"params": no_decay, "weight_decay": 0.0}]


def _layer_decay_groups(model: nn.Module, weight_decay: float | None, skip: set[str], layer_decay: float) -> list[dict]:
    """timm's ``param_groups_layer_decay`` groups: one per (layer id, decay or not), in first-seen order."""
    ids, num_layers = layer_ids(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer, decayed = ids[name], name not in skip
        if (layer, decayed) not in groups:
            group: dict = {"params": [], "lr_scale": layer_decay ** (num_layers + 1 - layer)}
            if not decayed:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay
            groups[layer, decayed] = group
        groups[layer, decayed]["params"].append(p)
    return list(groups.values())
