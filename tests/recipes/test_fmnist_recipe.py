"""The Fashion-MNIST benchmark recipes run a fast dev run on a tiny IDX folder, with every benchmark norm."""

import pytest
import yaml

from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.training import lightning_cli

FMNIST = trained_from_scratch(list_recipes("vit/*_fmnist.yaml"))
CPU_OVERRIDES = [
    "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip


def test_fmnist_recipes_are_found():
    assert [p.name for p in FMNIST] == ["vit_mini_fmnist.yaml", "vit_small_fmnist.yaml"]


@pytest.mark.parametrize("recipe", FMNIST, ids=lambda p: p.stem)
def test_fmnist_recipe_header_and_settings(recipe):
    text = recipe.read_text()
    assert "Reproduces:" in text and "derf-zoo fit -c" in text and "derf-zoo benchmark fmnist" in text
    cfg = yaml.safe_load(text)
    assert cfg["data"]["class_path"] == "derf_zoo.data.FashionMNISTDataModule"
    model_args = cfg["model"]["init_args"]["model_args"]
    assert (model_args["img_size"], model_args["in_chans"], model_args["num_classes"]) == (28, 1, 10)
    assert model_args["norm"] == "layernorm"  # the baseline; the benchmark overrides only this and the seed


@pytest.mark.parametrize("norm", ["layernorm", "derf(alpha=auto)"])
@pytest.mark.parametrize("recipe", FMNIST, ids=lambda p: p.stem)
@pytest.mark.slow
def test_fmnist_recipe_runs_fast_dev_run(recipe, norm, fmnist_folder, tmp_path, collect_garbage):
    cli = lightning_cli(
        ["fit", "-c", str(recipe), *CPU_OVERRIDES, f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ckpt'}", f"--data.init_args.root={fmnist_folder}",
         "--data.init_args.val_size=20", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
         f"--model.init_args.model_args.norm={norm}"]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.eval_mode_train_loss > 0
