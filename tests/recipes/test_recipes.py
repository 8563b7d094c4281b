"""Every recipe parses, and runs one training and one validation batch on a tiny stand-in dataset."""

from pathlib import Path

import pytest
import yaml

from derf_zoo.models import list_families
from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.training import lightning_cli

RECIPES = list_recipes()
IN1K = trained_from_scratch([p for p in RECIPES if p.name.endswith("_in1k.yaml")])
DIGITS = trained_from_scratch([p for p in RECIPES if p.name.endswith("_digits.yaml")])

# What a one-CPU stand-in run changes; everything else is the recipe as written.
CPU_OVERRIDES = [
    "--trainer.fast_dev_run=true",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.num_nodes=1",
    "--trainer.strategy=auto",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def test_recipes_are_found():
    # Properties that hold as recipes are added (each Derf recipe's siblings: test_recipe_triples.py).
    assert IN1K and DIGITS and all(p.parent.name == "vit" for p in IN1K)
    folders = {p.parent.name for p in RECIPES}
    assert folders == set(list_families()), "one recipe folder per registered family, named after it"
    for family in folders:
        assert trained_from_scratch(list_recipes(f"{family}/*.yaml")), f"{family}: no recipe trains from scratch"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_says_what_it_reproduces_and_how_to_launch(recipe):
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "Reproduces:" in header and "derf-zoo fit -c" in header
    if recipe in IN1K:
        assert "Tab. 8" in header and "One GPU" in header and "srun" in header


@pytest.mark.parametrize("recipe", IN1K, ids=lambda p: p.stem)
def test_in1k_recipe_holds_the_papers_settings(recipe):
    cfg = yaml.safe_load(recipe.read_text())
    model = cfg["model"]["init_args"]
    large = "large" in recipe.name
    assert model["optimizer"]["init_args"]["lr"] == 4.0e-3 and model["optimizer"]["init_args"]["weight_decay"] == 0.05
    assert model["optimizer"]["init_args"]["betas"] == ([0.9, 0.95] if large else [0.9, 0.999])
    assert model["schedule"] == {"name": "cosine", "warmup_epochs": 20, "min_lr": 1.0e-6}
    assert (model["label_smoothing"], model["mixup"], model["cutmix"]) == (0.1, 0.8, 1.0)
    assert model["model_args"]["drop_path_rate"] == (0.5 if large else 0.15)
    assert cfg["trainer"]["max_epochs"] == 300 and cfg["trainer"]["precision"] == "32-true"
    nodes, per_gpu = cfg["trainer"]["num_nodes"], cfg["data"]["init_args"]["batch_size"]
    assert nodes * cfg["trainer"]["devices"] * per_gpu == 4096
    ema = [c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("EMAWeightAveraging")]
    assert ema and ema[0]["init_args"]["decay"] == 0.9999
    data = cfg["data"]["init_args"]
    assert (data["auto_augment"], data["reprob"], data["interpolation"]) == ("rand-m9-mstd0.5-inc1", 0.25, "bicubic")


@pytest.mark.parametrize("recipe", IN1K, ids=lambda p: p.stem)
@pytest.mark.slow
def test_in1k_recipe_runs_fast_dev_run_on_a_local_folder(recipe, image_folder, tmp_path, collect_garbage):
    # The stand-in folder has 3 classes of 40 px images; 32 px keeps a ViT-L step fast on a CPU (the
    # full-size architecture is covered by the parity tests).
    cli = lightning_cli(
        ["fit", "-c", str(recipe), *CPU_OVERRIDES, f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ckpt'}", f"--data.init_args.root={image_folder}",
         "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--data.init_args.img_size=32",
         "--model.init_args.model_args.num_classes=3", "--model.init_args.model_args.img_size=32"]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert not (tmp_path / "ckpt").exists()  # a fast dev run writes no checkpoint (a ViT-L one is 4.8 GB)


@pytest.mark.parametrize("recipe", DIGITS, ids=lambda p: p.stem)
@pytest.mark.slow
def test_digits_recipe_runs_fast_dev_run(recipe, tmp_path):
    cli = lightning_cli(
        [
            "fit",
            "-c",
            str(recipe),
            *CPU_OVERRIDES,
            f"--trainer.default_root_dir={tmp_path}",
            f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
        ]
    )
    assert cli.trainer.state.finished and cli.trainer.global_step == 1


def test_print_config_and_unknown_key(capsys, tmp_path):
    recipe = str(next(p for p in DIGITS if p.name.startswith("vit_")))
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "-c", recipe, "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model"].startswith("vit_nano_")
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(recipe).read_text().replace("label_smoothing: 0.1", "label_smothing: 0.1"))
    with pytest.raises(SystemExit):
        lightning_cli(["fit", "-c", str(bad)])
    assert "label_smothing" in capsys.readouterr().err
