"""The fine-tuning recipes (``*_finetune*``): pretrained weights, a new head, layer-wise lr decay; the ViT-B one runs
on a local ImageFolder from a local weights folder, the digits one from the released Fashion-MNIST model."""

import pytest
import torch
import yaml

from derf_zoo.models import create_model
from derf_zoo.recipes import fine_tunes, recipe_path
from derf_zoo.tasks import ImageClassification
from derf_zoo.training import lightning_cli

VIT_B = recipe_path("vit/vit_base_derf_finetune.yaml")
DIGITS = recipe_path("vit/vit_mini_derf_finetune_digits.yaml")
CPU = ["--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.devices=1",
       "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip


def _header(recipe) -> str:
    return "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))


def test_the_fine_tunes_are_found_and_say_where_their_weights_come_from():
    assert fine_tunes() == [VIT_B, DIGITS]
    for recipe in fine_tunes():
        header, args = _header(recipe), yaml.safe_load(recipe.read_text())["model"]["init_args"]
        assert "Reproduces:" in header and "derf-zoo fit -c" in header
        assert args["model_args"]["pretrained"] is True and args["layer_decay"] == 0.65
    header = _header(VIT_B)
    assert "vit_base_derf_from_augreg_in1k.yaml" in header and "derf-zoo export" in header
    assert "pretrained_cfg_overlay" in header and "finetune_digits.md" in header


def test_vit_b_recipe_holds_maes_fine_tuning_settings():
    cfg = yaml.safe_load(VIT_B.read_text())
    args, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert args["optimizer"]["init_args"]["lr"] == pytest.approx(5e-4 * data["batch_size"] * cfg["trainer"]["devices"]
                                                                 / 256)  # fmt: skip
    assert (args["label_smoothing"], args["mixup"], args["cutmix"]) == (0.1, 0.8, 1.0)
    assert args["model_args"]["drop_path_rate"] == 0.1 and args["model_args"]["norm"] == "derf"
    assert (data["auto_augment"], data["reprob"]) == ("rand-m9-mstd0.5-inc1", 0.25)
    # the architecture the conversion recipe trains, so its exported weights load
    convert = yaml.safe_load(recipe_path("vit/vit_base_derf_from_augreg_in1k.yaml").read_text())["model"]["init_args"]
    assert args["model"] == convert["model"]
    for key in ("global_pool", "class_token", "norm"):
        assert args["model_args"][key] == convert["model_args"][key], key


@pytest.mark.slow
def test_vit_b_recipe_runs_fast_dev_run_from_a_local_weights_folder(image_folder, tmp_path):
    # Weights of the recipe's architecture at the stand-in size (32 px, 2 blocks), with ImageNet's 1000 classes:
    # the 3-class ImageFolder gets a new head, with a warning, and everything else loads.
    arch = {"img_size": 32, "depth": 2, "global_pool": "token", "class_token": True, "norm": "derf"}
    source = create_model("vit_base_patch16_224", num_classes=1000, **arch)
    folder = source.save_pretrained(tmp_path / "weights")
    with pytest.warns(UserWarning, match="1000 classes in the weights and 3 in the model"):
        cli = lightning_cli(
            ["fit", "-c", str(VIT_B), *CPU, f"--trainer.default_root_dir={tmp_path}",
             f"--checkpoint.dirpath={tmp_path / 'ckpt'}", f"--data.init_args.root={image_folder}",
             "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--data.init_args.img_size=32",
             f"--model.init_args.model_args.pretrained_cfg_overlay.file={folder}",
             "--model.init_args.model_args.num_classes=3", "--model.init_args.model_args.img_size=32",
             "--model.init_args.model_args.depth=2"]
        )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    groups = cli.trainer.optimizers[0].param_groups
    assert len(groups) == 2 * 4 and min(g["lr_scale"] for g in groups) == pytest.approx(0.65**3)


def test_digits_recipe_runs_fast_dev_run_from_the_released_weights(tmp_path):
    cli = lightning_cli(["fit", "-c", str(DIGITS), *CPU, f"--trainer.default_root_dir={tmp_path}",
                         f"--checkpoint.dirpath={tmp_path / 'ckpt'}"])  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    groups = cli.trainer.optimizers[0].param_groups
    assert len(groups) == 2 * (4 + 2) and max(g["lr_scale"] for g in groups) == 1.0


def test_a_pretrained_model_trains_in_train_mode_with_a_new_head():
    released = create_model("vit_mini_derf.from_ln_fmnist", pretrained=True)
    assert not released.training  # loaded for inference
    torch.manual_seed(0)
    task = ImageClassification("vit_mini_derf.from_ln_fmnist", model_args={"pretrained": True}, reset_head=True)
    assert all(m.training for m in task.model.modules())  # drop path and dropout act while fine-tuning
    assert not torch.equal(task.model.head.weight, released.head.weight)
    body = {k: v for k, v in task.model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, released.state_dict()[k]) for k, v in body.items())
    kept = ImageClassification("vit_mini_derf.from_ln_fmnist", model_args={"pretrained": True})
    assert torch.equal(kept.model.head.weight, released.head.weight)  # reset_head is off by default


def test_reset_head_needs_a_model_that_can_reset_it():
    class NoReset(torch.nn.Module):
        num_classes = 2

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="reset_head: NoReset has no reset_classifier"):
        ImageClassification(NoReset(), reset_head=True)
