import math

import lightning as L
import pytest
import torch

import derf_zoo
from derf_zoo.callbacks import EvalModeTrainLoss, NormStats, evaluation_mode_loss
from derf_zoo.data import DigitsDataModule
from derf_zoo.norms import PointwiseNorm
from derf_zoo.tasks import ImageClassification, Schedule

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def _trainer(tmp_path, **kw):
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**defaults, **kw})


def test_schedule_warmup_then_cosine_to_min_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = Schedule("cosine", warmup_epochs=2, min_lr=0.1).build(opt, total_steps=100, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 20) and lrs[19] == pytest.approx(1.0)
    step = 60  # closed form: min + (1 - min) * (1 + cos(pi * progress)) / 2
    expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 20) / 80))
    assert lrs[step] == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 79 / 80)))
    with pytest.raises(ValueError, match="Unknown schedule"):
        Schedule("step")


def test_optimizer_groups_exclude_1d_parameters_from_decay():
    task = ImageClassification(
        "vit_nano_derf", {**TINY}, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    )
    decay, no_decay = task.configure_optimizers().param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0  # the recipe's value, and none
    names = {id(p): n for n, p in task.model.named_parameters()}
    expected = {n for n, p in task.model.named_parameters() if p.ndim < 2 or n in ("pos_embed", "cls_token")}
    assert {names[id(p)] for p in no_decay["params"]} == expected
    assert any(n.endswith(".alpha") for n in expected) and any(n.endswith(".shift") for n in expected)


def test_fit_calibrates_auto_alpha_once_and_logs_norm_stats(tmp_path):
    task = ImageClassification("vit_nano_derf", {**TINY, "norm": "derf(alpha=auto)"}, label_smoothing=0.1)
    before = [m.alpha.item() for m in task.model.modules() if isinstance(m, PointwiseNorm)]
    assert set(before) == {0.5}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=1, callbacks=[NormStats(every_n_steps=1)])
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=32))
    assert task.alpha_calibrated
    after = [m.alpha.item() for m in task.model.modules() if isinstance(m, PointwiseNorm)]
    assert all(abs(a - 0.5) > 0.3 for a in after)  # calibrated (then a few optimizer steps)
    logged = trainer.logged_metrics
    for key in ("norm/attn/alpha_mean", "norm/mlp/shift_max", "norm/final/saturated"):
        assert key in logged, sorted(logged)
    assert 0.0 <= float(logged["norm/attn/saturated"]) <= 1.0


def test_mixup_cutmix_path_trains(tmp_path):
    task = ImageClassification("vit_nano_dyt", {**TINY}, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1)
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=16))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_eval_mode_train_loss_matches_a_manual_pass(tmp_path):
    task = ImageClassification("vit_nano_ln", {**TINY, "drop_path_rate": 0.3})
    data = DigitsDataModule(batch_size=64)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1, callbacks=[EvalModeTrainLoss()])
    trainer.fit(task, datamodule=data)
    manual = evaluation_mode_loss(task, data.train_eval_dataloader())
    assert task.eval_mode_train_loss == pytest.approx(manual, rel=1e-6)
    assert task.training  # mode restored


def test_num_classes_mismatch_is_a_clear_error(tmp_path):
    task = ImageClassification("vit_nano_derf", {**TINY, "num_classes": 7})
    with pytest.raises(ValueError, match=r"num_classes mismatch: the model has 7 outputs but the data has 10"):
        _trainer(tmp_path, max_steps=1).fit(task, datamodule=DigitsDataModule())


def test_injected_module_and_bad_model_args():
    net = derf_zoo.vit_nano_ln(**TINY)
    assert ImageClassification(net).model is net
    with pytest.raises(ValueError, match="model_args only applies"):
        ImageClassification(net, {"depth": 3})
    with pytest.raises(ValueError, match="num_classes > 0"):
        ImageClassification("vit_nano_ln", {**TINY, "num_classes": 0})


def test_predict_returns_probabilities(tmp_path):
    task = ImageClassification("vit_nano_ln", {**TINY})
    out = _trainer(tmp_path).predict(task, datamodule=DigitsDataModule(batch_size=100))
    probs = torch.cat(out)
    assert probs.shape == (359, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(359))
