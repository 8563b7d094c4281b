"""Parameter groups: what stays out of weight decay, through param_groups and through every task's optimizer."""

import torch
from torch import nn

from derf_zoo.models import create_model
from derf_zoo.models.caduceus.mamba import Mamba
from derf_zoo.tasks import DNALanguageModeling, SequenceClassification, param_groups
from derf_zoo.tasks.optim import no_decay_names


def _names(model: nn.Module, params: list) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_mamba_a_log_and_d_are_not_decayed():
    model = create_model("caduceus_nano_derf")
    decay, no_decay = (_names(model, g["params"]) for g in param_groups(model, 0.1))
    a_logs = {n for n in decay | no_decay if n.endswith("A_log")}
    ds = {n for n in decay | no_decay if n.endswith(".D")}
    assert a_logs and ds
    assert all(model.get_parameter(n).ndim == 2 for n in a_logs)  # 2-D: the ndim rule alone would decay it
    assert a_logs | ds <= no_decay and not (a_logs | ds) & decay
    assert any(n.endswith("in_proj.weight") for n in decay)  # the projections are still decayed


def test_tagged_parameters_are_not_decayed_in_the_tasks_optimizers():
    lm = DNALanguageModeling(model="caduceus_nano", mode="masked")
    decay, no_decay = lm.configure_optimizers().param_groups
    tagged = [p for p in lm.model.parameters() if getattr(p, "_no_weight_decay", False)]
    assert tagged and all(any(p is q for q in no_decay["params"]) for p in tagged)
    assert not any(p is q for p in tagged for q in decay["params"])
    # a classifier around the backbone keeps the tags too
    clf = SequenceClassification(model="caduceus_nano", num_classes=2)
    _, no_decay = clf.configure_optimizers().param_groups
    tagged = [p for p in clf.model.parameters() if getattr(p, "_no_weight_decay", False)]
    assert tagged and all(any(p is q for q in no_decay["params"]) for p in tagged)


class _WithPositions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.proj = nn.Linear(8, 8)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def test_no_weight_decay_of_a_wrapped_submodule_is_honoured():
    wrapper = nn.Sequential(_WithPositions(), nn.Linear(8, 2))
    assert no_decay_names(wrapper) == ["0.pos_embed", "0.proj.bias", "1.bias"]
    decay, _ = param_groups(wrapper, 0.05)
    assert _names(wrapper, decay["params"]) == {"0.proj.weight", "1.weight"}


def test_derf_alpha_shift_and_weight_stay_undecayed():
    model = create_model("hyenadna_nano_derf")
    names = set(no_decay_names(model))
    derf = [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in ("alpha", "shift")]
    assert derf and set(derf) <= names
    assert "backbone.norm.weight" in names
    assert "embeddings.weight" not in names  # the tied embedding is decayed, as before issue 18


def test_a_mamba_alone_tags_its_own_parameters():
    mamba = Mamba(8, d_state=4)
    assert set(no_decay_names(mamba)) >= {"A_log", "D"}
