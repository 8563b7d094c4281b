"""Layer-wise learning-rate decay (BEiT, MAE, timm): the layers near the input fine-tune with smaller steps.

Each trainable parameter gets a layer id: 0 for everything before the first block (patch/token embedding, class
token, positions, a conv stem, a timestep/label embedder), ``i + 1`` for block ``i``, and ``num_layers + 1`` for
everything after the last block (the final norm, a pooling norm, the head). Its learning rate is the schedule's
times ``lr_scale = layer_decay ** (num_layers + 1 - layer_id)``: the head trains at the full lr, the embeddings at
``layer_decay ** (num_layers + 1)`` of it. This follows timm's ``param_groups_layer_decay``
(timm/optim/_param_groups.py, after BEiT's optim_factory) and numbers layers as BEiT's and MAE's
``get_layer_id_for_vit`` do; timm's ViT ``group_matcher`` gives the same ids but for one parameter: it merges a
class-token ViT's final ``norm`` into the last block's group (an average-pooling ViT's ``fc_norm`` gets
``num_layers + 1`` there too, which tests/tasks/test_layer_decay.py checks against timm group for group).

The ids come from the model's structure, not from per-family names: the blocks are the ``blocks`` of the one
:class:`derf_zoo.backbone.Transformer` inside the model (every derf_zoo family, a classifier around one included),
or else the one ``blocks`` ModuleList/Sequential (timm's models); a parameter outside them is "before" or "after"
by the order the model registers it, which is the order of the forward in every family here. One exception is
worth knowing: wav2vec 2.0 registers the LayerNorm it applies before its first block after the backbone, so it
gets the head's id (it trains at the full lr).
"""

from __future__ import annotations

import math

from torch import nn

from derf_zoo._validate import is_real

__all__ = ["check_layer_decay", "layer_ids"]


def check_layer_decay(layer_decay: float | None) -> None:
    """Refuse a ``layer_decay`` that is not None or a number in (0, 1], naming it."""
    if layer_decay is None:
        return
    if not is_real(layer_decay) or not math.isfinite(layer_decay) or not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be None (off) or a number in (0, 1] (timm/BEiT use 0.65-0.75), "
                         f"got {layer_decay!r}.")  # fmt: skip


def _blocks(model: nn.Module) -> tuple[str, nn.Module]:
    """``(path, blocks)``: the blocks of the model's one backbone (see the module docstring)."""
    from derf_zoo.backbone import Transformer

    found = [(f"{path}.blocks" if path else "blocks", m.blocks) for path, m in model.named_modules()
             if isinstance(m, Transformer)]  # fmt: skip
    if not found:
        found = [(path, m) for path, m in model.named_modules()
                 if path.rsplit(".", 1)[-1] == "blocks" and isinstance(m, (nn.ModuleList, nn.Sequential))]  # fmt: skip
    if len(found) != 1:
        where = f"{len(found)} of them ({', '.join(p for p, _ in found)})" if found else "none"
        raise ValueError(
            f"layer_decay needs one stack of blocks to count layers in {type(model).__name__}: a derf_zoo Transformer "
            f"backbone or a module named 'blocks' (an nn.ModuleList or nn.Sequential); found {where}. "
            "Set layer_decay: null for this model."
        )
    return found[0]


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """The layer id of every parameter of ``model`` (by name) and the number of blocks.

    Returns:
        ``({name: layer_id}, num_layers)``; ids run from 0 (before the first block) to ``num_layers + 1``
        (after the last one), as timm's ``param_groups_layer_decay`` numbers them.
    """
    path, blocks = _blocks(model)
    num_layers = len(blocks)
    prefix = f"{path}."
    ids: dict[str, int] = {}
    after = False  # once a block parameter was seen, what is not in a block comes after the blocks
    for name, _ in model.named_parameters():
        if name.startswith(prefix):
            ids[name] = int(name[len(prefix):].split(".", 1)[0]) + 1
            after = True
        else:
            ids[name] = num_layers + 1 if after else 0
    return ids, num_layers
