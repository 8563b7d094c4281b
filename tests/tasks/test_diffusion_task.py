"""The Diffusion task on the contract: inputs for calibration, losses, evaluation, a short fit on the digits."""

import lightning as L
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
