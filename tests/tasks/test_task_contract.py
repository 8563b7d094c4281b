"""The task contract every family's LightningModule stands on (derf_zoo.tasks.base.Task)."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import derf_zoo
from derf_zoo.callbacks import EvalModeTrainLoss, evaluation_mode_loss
from derf_zoo.hub.lightning_checkpoint import load_lightning_checkpoint, recorded_metrics
from derf_zoo.norms import PointwiseNorm
from derf_zoo.tasks import ImageClassification, MetricSpec, Task
from derf_zoo.tasks.base import TASK_KEY


class ScaledRegressor(nn.Module):
    """A network with two inputs, so calibration must go through the task's model_inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = derf_zoo.get_norm_layer("derf(alpha=auto)")(4)
        self.out = nn.Linear(4, 1)

    def forward(self, x, scale):
        return self.out(self.norm(x * scale))


class Regression(Task):
    task_type = "tabular-regression"
    metrics = (MetricSpec("mse", higher_is_better=False),)

    def __init__(self, **kwargs) -> None:
        super().__init__(ScaledRegressor(), **kwargs)

    def model_inputs(self, batch):
        x, _ = batch
        return (x,), {"scale": 10.0}

    def training_loss(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.model(x, scale=10.0).squeeze(-1), y)

    def evaluation_loss(self, batch):
        x, y = batch
        return F.mse_loss(self.model(x, scale=10.0).squeeze(-1), y, reduction="sum"), len(y)

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", self.evaluation_loss(batch)[0] / len(batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # parameters stay as calibration left them


class Data(L.LightningDataModule):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8)

    val_dataloader = train_eval_dataloader = train_dataloader


def _trainer(tmp_path, **kw):
    return L.Trainer(**{"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                        "enable_model_summary": False, "default_root_dir": tmp_path, "enable_checkpointing": False,
                        **kw})  # fmt: skip


def test_calibration_uses_the_tasks_model_inputs_and_eval_loss_uses_its_loss(tmp_path):
    torch.manual_seed(0)
    task = Regression()
    data = Data(torch.randn(32, 4), torch.randn(32))
    _trainer(tmp_path, max_steps=1, limit_val_batches=1, callbacks=[EvalModeTrainLoss()]).fit(task, datamodule=data)
    # alpha * std(x * scale) = 1 on the first batch, so alpha ~ 1 / (10 * std(x)): it saw the scale.
    first = data.x[:8] * 10.0
    assert task.alpha_calibrated
    assert task.model.norm.alpha.item() == pytest.approx(1.0 / float(first.std()), rel=0.05)
    assert task.eval_mode_train_loss == pytest.approx(evaluation_mode_loss(task, data.train_eval_dataloader()))


def test_the_checkpoint_records_the_task_and_its_metrics(tmp_path):
    task = Regression()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[ckpt],
                       enable_checkpointing=True)
    trainer.fit(task, datamodule=Data(torch.randn(16, 4), torch.randn(16)))
    saved = load_lightning_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert saved[TASK_KEY] == {"class_path": f"{Regression.__module__}.Regression", "task_type": "tabular-regression",
                               "metrics": [{"name": "mse", "higher_is_better": False, "percent": False,
                                            "description": ""}]}  # fmt: skip
    assert set(recorded_metrics(saved)) == {"mse"}  # as declared: not scaled, not assumed to be accuracy
    assert saved["derf_zoo_alpha_calibrated"] is True


def test_classification_declares_percent_metrics():
    assert ImageClassification.task_type == "image-classification"
    ckpt = {TASK_KEY: ImageClassification.declaration(), "derf_zoo_val_metrics": {"val/acc1": 0.5, "val/loss": 1.25}}
    assert recorded_metrics(ckpt) == {"acc1": 50.0, "loss": 1.25}
    with pytest.raises(TypeError, match="must declare task_type and metrics"):
        Task.declaration()


def _poisoned_digits(poison_batch: int):
    from derf_zoo.data import DigitsDataModule

    class Poisoned(DigitsDataModule):
        def train_dataloader(self):
            for i, (x, y) in enumerate(super().train_dataloader()):
                if i == poison_batch:
                    x = x.clone()
                    x[0, 0, 0, 0] = float("nan")
                yield x, y

    return Poisoned(batch_size=32)


def test_a_nan_in_the_data_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    task = ImageClassification("vit_nano_derf", {"embed_dim": 16, "depth": 1, "num_heads": 2})
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1, callbacks=[ckpt],
                       enable_checkpointing=True)
    trainer.fit(task, datamodule=_poisoned_digits(poison_batch=99))  # a clean epoch: a good checkpoint
    good = load_lightning_checkpoint(tmp_path / "ckpt" / "last.ckpt")["state_dict"]
    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1, callbacks=[ckpt],
                       enable_checkpointing=True)
    with pytest.raises(FloatingPointError, match=r"Non-finite training loss \(nan\) at global step 4 .*batch 1"):
        trainer.fit(task, datamodule=_poisoned_digits(poison_batch=1), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    after = load_lightning_checkpoint(tmp_path / "ckpt" / "last.ckpt")["state_dict"]
    assert all(torch.equal(after[k], v) for k, v in good.items())
    assert all(torch.isfinite(p).all() for p in task.parameters())  # stopped before the optimizer step


def test_a_nan_loss_in_an_accumulated_micro_batch_is_named_with_its_batch(tmp_path):
    # The loss is checked with the gradients, once per optimizer step: every micro-batch's loss is kept until then.
    task = ImageClassification("vit_nano_derf", {"embed_dim": 16, "depth": 1, "num_heads": 2})
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=0, accumulate_grad_batches=2)
    with pytest.raises(FloatingPointError, match=r"Non-finite training loss \(nan\) at global step 1 .*batch 2"):
        trainer.fit(task, datamodule=_poisoned_digits(poison_batch=2))
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_nonfinite_skip_skips_and_counts(tmp_path):
    task = ImageClassification("vit_nano_derf", {"embed_dim": 16, "depth": 1, "num_heads": 2}, nonfinite="skip")
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    with pytest.warns(UserWarning, match="Skipping a batch with a non-finite training loss"):
        trainer.fit(task, datamodule=_poisoned_digits(poison_batch=1))
    assert task.nonfinite_skipped == 1
    assert all(torch.isfinite(p).all() for p in task.parameters())
    with pytest.raises(ValueError, match="nonfinite must be 'error' or 'skip'"):
        ImageClassification("vit_nano_derf", nonfinite="ignore")


def _nan_digits(poisoned):
    from derf_zoo.data import DigitsDataModule

    class Diverging(DigitsDataModule):  # as a run at lr 1e12: the batches `poisoned(i)` names give a NaN loss
        def train_dataloader(self):
            for i, (x, y) in enumerate(super().train_dataloader()):
                yield (x.clone().fill_(float("nan")) if poisoned(i) else x), y

    return Diverging(batch_size=8)


@pytest.mark.parametrize(("bounds", "poisoned", "match"), [
    ({"nonfinite_max_consecutive": 3}, lambda i: i >= 1,
     r"4 batches in a row had a non-finite training loss .*nonfinite_max_consecutive=3"),
    ({"nonfinite_max_consecutive": 1, "nonfinite_max_fraction": 0.25}, lambda i: i % 2 == 1,
     r"2 of 4 training batches had a non-finite loss .*nonfinite_max_fraction=0.25"),
])  # fmt: skip
def test_nonfinite_skip_is_bounded(tmp_path, bounds, poisoned, match):
    task = ImageClassification("vit_nano_derf", {"embed_dim": 16, "depth": 1, "num_heads": 2}, nonfinite="skip",
                               **bounds)  # fmt: skip
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=30, limit_val_batches=0)
    with pytest.warns(UserWarning, match="Skipping a batch"), pytest.raises(FloatingPointError, match=match):
        trainer.fit(task, datamodule=_nan_digits(poisoned))
    assert all(torch.isfinite(p).all() for p in task.parameters())
    with pytest.raises(ValueError, match=r"nonfinite_max_fraction must be a number in \[0, 1\), got 1.5"):
        ImageClassification("vit_nano_derf", nonfinite_max_fraction=1.5)
    with pytest.raises(ValueError, match="nonfinite_max_consecutive must be an int >= 0, got -1"):
        ImageClassification("vit_nano_derf", nonfinite_max_consecutive=-1)


def test_a_nonfinite_gradient_is_an_error(tmp_path):
    task = Regression()
    task.model.out.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    with pytest.raises(FloatingPointError, match=r"Non-finite gradient at global step 0 .*model\.out\.weight"):
        _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(task, datamodule=Data(torch.randn(8, 4),
                                                                                      torch.randn(8)))


def test_pointwise_norms_untouched_when_not_auto(tmp_path):
    task = ImageClassification("vit_nano_derf", {"embed_dim": 16, "depth": 1, "num_heads": 2})
    alphas = [m.alpha.item() for m in task.model.modules() if isinstance(m, PointwiseNorm)]
    assert set(alphas) == {0.5}
