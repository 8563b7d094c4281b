"""Parameter groups shared by every task: no weight decay on 1-D parameters.

alpha, shift, norm weights/biases and every bias are 1-D (ndim < 2); decaying them pulls alpha
towards 0 (flattening the point-wise function) and is not what the paper's optimizers do
(official ViT code: ``len(shape) == 1`` -> no decay). Names a model lists in ``no_weight_decay()``
(timm convention: ``pos_embed``, ``cls_token``) join the no-decay group too.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["param_groups"]


def _no_decay_names(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def param_groups(model: nn.Module, weight_decay: float | None, extra_no_decay: Iterable[str] = ()) -> list[dict]:
    """Split the trainable parameters of ``model`` into a decay and a no-decay group.

    Args:
        model: the network.
        weight_decay: weight decay of the decay group; None leaves it to the optimizer's own default
            (what a recipe sets in the optimizer's ``init_args``).
        extra_no_decay: more parameter names (exact) to exclude from decay.

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``,
        ready for any torch optimizer (the first group has no ``weight_decay`` key when it is None).
    """
    skip = _no_decay_names(model) | set(extra_no_decay)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name in skip else decay).append(p)
    decay_group: dict = {"params": decay}
    if weight_decay is not None:
        decay_group["weight_decay"] = weight_decay
    return [decay_group, {"params": no_decay, "weight_decay": 0.0}]
