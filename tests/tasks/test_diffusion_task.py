"""The Diffusion task on the contract: inputs for calibration, losses, evaluation, a short fit on the digits."""

import lightning as L
import pytest
import torch

from derf_zoo.data.generation import DigitsGenerationDataModule, to_pixels
from derf_zoo.norms import PointwiseNorm
from derf_zoo.tasks import Diffusion
from derf_zoo.tasks.base import TASK_KEY

TINY = {"depth": 1, "hidden_size": 32, "num_heads": 2}


def test_data_is_the_digits_in_minus_one_to_one():
    dm = DigitsGenerationDataModule(batch_size=16)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 1797 and 355 < len(dm.val_set) < 365 and dm.num_classes == 10
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 1, 8, 8) and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1
    assert to_pixels(x).min() >= 0


def test_model_inputs_losses_and_evaluate():
    task = Diffusion("dit_nano_derf", model_args=TINY)
    assert task.declaration()["task_type"] == "unconditional-image-generation"
    x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 9])
    (xt, t, yy), kwargs = task.model_inputs((x, y))
    assert xt.shape == x.shape and t.shape == (4,) and int(t.max()) < 1000 and yy is y and kwargs == {}
    assert task.model(xt, t, yy).shape == (4, 2, 8, 8)
    loss = task.training_loss((x, y), 0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    total, n = task.evaluation_loss((x, y))
    assert n == 4 and torch.isfinite(total)
    loader = [(x, y), (x, y)]
    first, again = Diffusion.evaluate(task.model, loader), Diffusion.evaluate(task.model, loader)
    assert first == again and set(first) == {"loss", "mse"}  # seeded draws: the same number every time


def test_fit_calibrates_validates_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    task = Diffusion("dit_nano_derf", model_args={**TINY, "norm": "derf(alpha=auto)"},
                     optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))  # fmt: skip
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(task, datamodule=DigitsGenerationDataModule(batch_size=8))
    assert task.alpha_calibrated
    alphas = [m.alpha.item() for m in task.model.modules() if isinstance(m, PointwiseNorm)]
    assert alphas and all(a != 0.5 for a in alphas)  # set from the first batch, not the placeholder
    assert "val/loss" in trainer.callback_metrics and "val/mse" in trainer.callback_metrics
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt[TASK_KEY]["metrics"][0]["name"] == "loss"


def test_validation_draws_repeat_across_epochs():
    task = Diffusion("dit_nano_ln", model_args=TINY).eval()
    batch = (torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([1, 2, 3, 4]))
    with torch.no_grad():
        a = task._losses(batch, torch.Generator().manual_seed(5))["loss"]
        b = task._losses(batch, torch.Generator().manual_seed(5))["loss"]
    torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_recipe_checkpoint_exports_with_eval_and_loads(tmp_path):
    from derf_zoo.models import from_pretrained
    from derf_zoo.recipes import recipe_path
    from derf_zoo.tasks.export import export_checkpoint
    from derf_zoo.training import lightning_cli

    cli = lightning_cli(
        ["fit", "-c", str(recipe_path("dit/dit_nano_derf_digits.yaml")), "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--trainer.accelerator=cpu",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.model.eval_mode_train_loss > 0
    folder, metrics = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "hub", evaluate=True)
    assert set(metrics) == {"loss", "mse"} and 0 < metrics["mse"] < metrics["loss"]
    model = from_pretrained(folder)
    assert model.norm_specs["attn"] == "derf" and "unconditional-image-generation" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_validation_loss_depends_on_the_images_not_on_batches_or_processes(tmp_path):
    # Each image draws from its own seed (its index in the dataset): the batch size, and so the split over
    # processes, changes nothing, and `evaluate` (export --eval) gives the same number as validation.
    torch.manual_seed(0)
    task = Diffusion("dit_nano_derf", model_args=TINY)
    scores = []
    for batch_size in (8, 13):
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)  # fmt: skip
        scores.append(trainer.validate(task, datamodule=DigitsGenerationDataModule(batch_size=batch_size),
                                       verbose=False)[0])  # fmt: skip
    assert scores[0]["val/loss"] == scores[1]["val/loss"] and scores[0]["val/mse"] == scores[1]["val/mse"]
    data = DigitsGenerationDataModule(batch_size=50)
    data.setup("validate")
    measured = Diffusion.evaluate(task.model, data.val_dataloader())
    assert abs(measured["loss"] - scores[0]["val/loss"]) < 1e-6 * abs(measured["loss"])
    # the images two ranks of DDP would see (DistributedSampler: interleaved, the last padded with a repeat)
    from torch.utils.data import DataLoader, DistributedSampler

    per_rank = []
    for rank in (0, 1):
        sampler = DistributedSampler(data.val_set, num_replicas=2, rank=rank, shuffle=False)
        task._start(DataLoader(data.val_set, batch_size=16, sampler=sampler))
        with torch.no_grad():
            for batch_idx, batch in enumerate(DataLoader(data.val_set, batch_size=16, sampler=sampler)):
                task._evaluate(batch, batch_idx)
        per_rank.append(task._eval_seen)
    indices, loss = (torch.cat([torch.cat([b[i] for b in r]) for r in per_rank]) for i in (0, 1))
    first = {int(k): float(v) for k, v in zip(indices.flip(0), loss.flip(0))}  # one value per image
    assert sorted(first) == list(range(len(data.val_set)))
    torch.testing.assert_close(torch.tensor(list(first.values())).mean(), torch.tensor(measured["loss"]))
