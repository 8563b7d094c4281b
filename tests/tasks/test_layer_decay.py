"""Layer-wise lr decay: timm's groups, the closed-form lr of every group through the schedule, every task's option."""

import inspect
import math
from types import SimpleNamespace

import lightning as L
import pytest
import timm
import torch
from jsonargparse import ArgumentParser
from timm.optim._param_groups import param_groups_layer_decay
from torch import nn

import derf_zoo.tasks as tasks
from derf_zoo.models import create_model
from derf_zoo.recipes import recipe_path
from derf_zoo.tasks import Diffusion, ImageClassification, Schedule, SequenceClassification, layer_ids, param_groups
from derf_zoo.training import lightning_cli


def _by_param(groups: list[dict]) -> dict[int, tuple[float, float | None]]:
    return {id(p): (g["lr_scale"], g.get("weight_decay")) for g in groups for p in g["params"]}


def _summary(groups: list[dict]) -> list[tuple[int, float, float | None]]:
    return [(len(g["params"]), g["lr_scale"], g.get("weight_decay")) for g in groups]


def test_groups_match_timm_param_groups_layer_decay():
    # An average-pooling timm ViT: its group_matcher numbers every parameter as BEiT/MAE do (module doc).
    model = timm.create_model("vit_tiny_patch16_224", depth=3, num_classes=5, img_size=32, patch_size=8,
                              global_pool="avg", fc_norm=True)  # fmt: skip
    ref = param_groups_layer_decay(model, 0.05, no_weight_decay_list=model.no_weight_decay(), layer_decay=0.65)
    ours = param_groups(model, 0.05, layer_decay=0.65)
    assert _by_param(ours) == _by_param(ref)
    assert _summary(ours) == _summary(ref)  # the same groups in the same order


def _closed_form_lr(step: int, lr: float, scale: float, warmup: int, total: int, min_lr: float) -> float:
    """timm's scheduler: the cosine-with-warmup value of the unscaled lr, times the group's lr_scale."""
    if step < warmup:
        return scale * lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return scale * (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_vit_every_group_follows_the_closed_form_through_the_task_schedule():
    task = ImageClassification("vit_nano_derf", layer_decay=0.65,
                               optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05),
                               schedule=Schedule("cosine", warmup_epochs=1, min_lr=1e-5))  # fmt: skip
    task._trainer = SimpleNamespace(estimated_stepping_batches=20, max_epochs=4)  # 5 steps an epoch: warmup 5
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    depth = len(task.model.backbone.blocks)
    ids, num_layers = layer_ids(task.model)
    assert num_layers == depth == 4
    names = {id(p): n for n, p in task.model.named_parameters()}
    expected_ids = {"cls_token": 0, "pos_embed": 0, "patch_embed.proj.weight": 0, "fc_norm.alpha": depth + 1,
                    "head.weight": depth + 1, "backbone.blocks.0.norm1.alpha": 1, "backbone.blocks.3.mlp.fc2.weight": 4}
    assert {n: ids[n] for n in expected_ids} == expected_ids
    assert len(optimizer.param_groups) == 2 * (depth + 2)  # a decay and a no-decay group per layer id
    for group in optimizer.param_groups:
        layer = {ids[names[id(p)]] for p in group["params"]}
        assert len(layer) == 1
        assert group["lr_scale"] == pytest.approx(0.65 ** (depth + 1 - layer.pop()))
        decayed = {task.model.get_parameter(names[id(p)]).ndim >= 2 and names[id(p)] not in ("cls_token", "pos_embed")
                   for p in group["params"]}  # fmt: skip
        assert decayed == {group["weight_decay"] == 0.05}
    for step in range(20):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(_closed_form_lr(step, 1e-3, group["lr_scale"], 5, 20, 1e-5), rel=1e-9)
        optimizer.step()
        scheduler.step()


def test_without_layer_decay_the_groups_and_lrs_are_unchanged():
    model = create_model("vit_nano_derf")
    assert param_groups(model, 0.05, layer_decay=None) == param_groups(model, 0.05)
    task = ImageClassification("vit_nano_derf", optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
                               schedule=Schedule("cosine", warmup_epochs=1, min_lr=1e-5))  # fmt: skip
    task._trainer = SimpleNamespace(estimated_stepping_batches=20, max_epochs=4)
    optimizer = task.configure_optimizers()["optimizer"]
    assert len(optimizer.param_groups) == 2 and all("lr_scale" not in g for g in optimizer.param_groups)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3 / 5] * 2)  # warmup step 0 of 5


def test_a_constant_lr_is_scaled_once_per_group():
    task = ImageClassification("vit_nano_derf", layer_decay=0.5,
                               optimizer=lambda params: torch.optim.SGD(params, lr=0.1))  # fmt: skip
    optimizer = task.configure_optimizers()
    lrs = sorted({round(g["lr"], 12) for g in optimizer.param_groups})
    assert lrs == [round(0.1 * 0.5**k, 12) for k in range(5, -1, -1)]  # embeddings 0.5^5 ... head 0.5^0


def test_dit_ids_put_the_embedders_first_and_the_final_layer_last():
    model = create_model("dit_nano_derf")
    ids, num_layers = layer_ids(model)
    assert num_layers == len(model.backbone.blocks)
    for name, layer in ids.items():
        if name.startswith(("x_embedder.", "t_embedder.", "y_embedder.")):
            assert layer == 0, name
        elif name.startswith("backbone.blocks."):
            assert layer == int(name.split(".")[2]) + 1, name
        else:
            assert name.startswith("final_layer.") and layer == num_layers + 1, name
    task = Diffusion("dit_nano_derf", layer_decay=0.8)
    groups = task.configure_optimizers().param_groups
    assert sorted({g["lr_scale"] for g in groups}) == pytest.approx([0.8**k for k in range(num_layers + 1, -1, -1)])


def test_a_classifier_around_a_dna_backbone_finds_its_blocks():
    task = SequenceClassification(model="caduceus_nano", num_classes=2, layer_decay=0.7)
    ids, num_layers = layer_ids(task.model)
    assert num_layers >= 1 and max(ids.values()) == num_layers + 1 and min(ids.values()) == 0
    head = [n for n in ids if n.startswith("head.")]
    assert head and all(ids[n] == num_layers + 1 for n in head)
    assert task.hparams["layer_decay"] == 0.7


def test_every_task_takes_layer_decay():
    classes = [getattr(tasks, n) for n in tasks.__all__
               if inspect.isclass(getattr(tasks, n)) and issubclass(getattr(tasks, n), tasks.Task)
               and getattr(tasks, n) is not tasks.Task]  # fmt: skip
    assert len(classes) >= 5
    for cls in classes:  # through **kwargs to Task: what the recipe parser sees
        parser = ArgumentParser()
        parser.add_class_arguments(cls, "model")
        assert parser.get_defaults().model.layer_decay is None, cls.__name__


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, True, "0.65", float("nan")])
def test_bad_layer_decay_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="layer_decay must be None"):
        ImageClassification("vit_nano_derf", layer_decay=bad)


def test_a_model_without_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layer_decay needs one stack of blocks.*found none"):
        param_groups(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), 0.05, layer_decay=0.7)


class _Killed(RuntimeError):
    pass


class _KillAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise _Killed(f"simulated kill at step {self.step}")


class _RecordLrs(L.Callback):
    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs[trainer.global_step] = [g["lr"] for g in trainer.optimizers[0].param_groups]


@pytest.mark.slow
def test_a_resumed_fine_tune_has_the_same_per_layer_lrs_as_an_uninterrupted_one(tmp_path):
    def fit(folder, kill_at=None, resume=False):
        run = lightning_cli(["-c", str(recipe_path("vit/vit_mini_derf_finetune_digits.yaml")),
                             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                             "--trainer.logger=false", f"--trainer.default_root_dir={folder}",
                             f"--checkpoint.dirpath={folder}", "--checkpoint.every_n_train_steps=4",
                             "--checkpoint.monitor=null", "--trainer.max_steps=12", "--trainer.limit_val_batches=1",
                             "--model.init_args.schedule.warmup_epochs=0"], run=False)  # fmt: skip
        record = _RecordLrs()
        run.trainer.callbacks.append(record)
        if kill_at is not None:
            run.trainer.callbacks.append(_KillAt(kill_at))
        run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path="last" if resume else None)
        return record.lrs

    uninterrupted = fit(tmp_path / "a")
    with pytest.raises(_Killed):
        fit(tmp_path / "b", kill_at=6)
    resumed = fit(tmp_path / "b", resume=True)  # from the step-4 checkpoint
    assert sorted(resumed) == list(range(4, 12))
    for step, lrs in resumed.items():
        assert lrs == pytest.approx(uninterrupted[step], rel=1e-12), step
        assert len(set(lrs)) == 6  # one lr per layer id (decay and no-decay groups share it)
    assert resumed[4] != pytest.approx(resumed[8])  # the cosine moves: not a comparison of two floors
