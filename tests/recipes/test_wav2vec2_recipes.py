"""The wav2vec 2.0 recipes: the paper's Tab. 19 as written, and a fast dev run of each on a tiny manifest."""

import numpy as np
import pytest
import soundfile as sf
import yaml

from derf_zoo.data import write_manifest
from derf_zoo.models import get_model_entry
from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.training import lightning_cli

PAPER = trained_from_scratch(list_recipes("wav2vec2/*_librispeech.yaml"))
DEMO = trained_from_scratch(list_recipes("wav2vec2/*_speech.yaml"))
CPU = ["--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1",
       "--trainer.strategy=auto", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# A 16-channel CNN, one 32-wide block, 2 x 8 codevectors: the full sizes are covered by the model tests.
SMALL = {"conv_dim": "[16,16,16,16,16,16,16]", "embed_dim": 32, "depth": 1, "num_heads": 2, "ffn_dim": 64,
         "final_dim": 16, "num_codevectors": 8, "num_negatives": 5, "pos_conv_kernel": 8, "pos_conv_groups": 2}
# The paper's Tab. 19 (Base, Large) and its validation losses (Tab. 10).
TAB19 = {
    "base": {"lr": 5e-4, "max_tokens": 1_400_000, "max_steps": 400_000, "warmup": 32_000, "layer_drop": 0.05,
             "dropout": 0.0, "latent_temp": [2.0, 0.5, 0.999995], "max_sample_size": 250_000, "gpus": 64},
    "large": {"lr": 3e-4, "max_tokens": 1_200_000, "max_steps": 250_000, "warmup": 20_000, "layer_drop": 0.2,
              "dropout": 0.1, "latent_temp": [2.0, 0.1, 0.999995], "max_sample_size": 320_000, "gpus": 128},
}
VAL_LOSS = {("base", "ln"): "1.95", ("base", "dyt"): "1.95", ("base", "derf"): "1.93",
            ("large", "ln"): "1.92", ("large", "dyt"): "1.91", ("large", "derf"): "1.90"}


def write_tiny_manifests(root, seconds=(1.0, 1.2, 0.9, 1.1)):
    """Two 16 kHz FLAC folders (train: noisy chirps, valid: two of them) and their manifests."""
    rng = np.random.default_rng(0)
    for split, n in (("train", len(seconds)), ("valid", 2)):
        folder = root / "audio" / split
        folder.mkdir(parents=True)
        for i, s in enumerate(seconds[:n]):
            t = np.arange(int(16000 * s)) / 16000
            wave = 0.5 * np.sin(2 * np.pi * (150 + 50 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)
            sf.write(folder / f"{i}.flac", wave.astype(np.float32), 16000)
        write_manifest(folder, root / "manifests" / f"{split}.tsv")
    return root / "manifests"


def test_six_paper_rows_and_two_demo_recipes():
    assert sorted(p.stem for p in PAPER) == sorted(f"wav2vec2_{s}_{n}_librispeech" for s in ("base", "large")
                                                   for n in ("derf", "dyt", "ln"))  # fmt: skip
    assert sorted(p.stem for p in DEMO) == ["wav2vec2_tiny_derf_speech", "wav2vec2_tiny_ln_speech"]


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_recipe_holds_the_papers_settings(recipe):
    text = recipe.read_text()
    cfg = yaml.safe_load(text)
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    size, norm = recipe.stem.split("_")[1:3]
    tab = TAB19[size]
    assert f"Tab. 10, wav2vec 2.0 {size.capitalize()} validation loss {VAL_LOSS[(size, norm)]}" in header
    assert "srun" in header and "accumulate_grad_batches" in header and "write_manifest" in header
    trainer, model, data = cfg["trainer"], cfg["model"]["init_args"], cfg["data"]["init_args"]
    # fp32, the update budget, fairseq's world size (nodes x 8 GPUs), no clipping (fairseq's clip_norm 0)
    assert trainer["precision"] == "32-true" and trainer["max_steps"] == tab["max_steps"]
    assert trainer["num_nodes"] * trainer["devices"] * trainer["accumulate_grad_batches"] == tab["gpus"]
    assert f"--trainer.accumulate_grad_batches {tab['gpus'] // 8}" in header
    assert trainer["gradient_clip_val"] is None
    opt = model["optimizer"]
    assert opt["class_path"] == "torch.optim.AdamW"
    assert opt["init_args"] == {"lr": tab["lr"], "betas": [0.9, 0.98], "eps": 1e-6, "weight_decay": 0.01}
    assert model["schedule"] == {"name": "polynomial", "power": 1.0, "min_lr": 0.0, "warmup_steps": tab["warmup"]}
    args = model["model_args"]
    assert args["norm_first"] is True and args["layer_drop"] == tab["layer_drop"] and args["dropout"] == tab["dropout"]
    assert args["latent_temp"] == tab["latent_temp"] and args["feature_grad_mult"] == 0.1
    assert (args["diversity_weight"], args["feature_penalty_weight"]) == (0.1, 10.0)
    assert args["dropout_input"] == args["dropout_features"] == 0.1
    assert args["final_dim"] == (256 if size == "base" else 768)
    assert args["norm"].split("(")[0] == {"derf": "derf", "dyt": "dyt", "ln": "layernorm"}[norm]
    assert ("alpha=0.5" in args["norm"]) == (norm != "ln")
    assert data["max_tokens"] == tab["max_tokens"] and data["max_sample_size"] == tab["max_sample_size"]
    assert data["min_sample_size"] == 32_000 and data["normalize"] is False  # the official configs
    assert get_model_entry(model["model"]).recipe == f"recipes/wav2vec2/{recipe.name}"


@pytest.mark.parametrize("recipe", list_recipes(), ids=lambda p: p.stem)
def test_ddp_recipe_that_skips_blocks_finds_unused_parameters(recipe):
    # LayerDrop leaves the skipped blocks' parameters without gradients; plain DDP then fails at the next step.
    cfg = yaml.safe_load(recipe.read_text())
    init = (cfg.get("model") or {}).get("init_args") or {}
    layer_drop = float((init.get("model_args") or {}).get("layer_drop") or 0.0)
    strategy = str((cfg.get("trainer") or {}).get("strategy", "auto"))
    if layer_drop > 0 and strategy.startswith("ddp"):
        assert strategy == "ddp_find_unused_parameters_true", f"{recipe.name}: layer_drop={layer_drop}, {strategy}"


@pytest.mark.parametrize("recipe", DEMO, ids=lambda p: p.stem)
def test_demo_recipes_differ_only_in_the_norm(recipe):
    cfg, other = (yaml.safe_load(p.read_text()) for p in (recipe, DEMO[1 - DEMO.index(recipe)]))
    assert cfg["data"]["init_args"]["embedded"] is True and cfg["seed_everything"] == other["seed_everything"]
    for cfg_ in (cfg, other):
        cfg_["model"]["init_args"].pop("model"), cfg_["model"]["init_args"]["model_args"].pop("norm")
        cfg_.pop("trainer")["default_root_dir"], cfg_.pop("checkpoint")
    assert cfg == other


@pytest.mark.parametrize("recipe", PAPER + DEMO, ids=lambda p: p.stem)
@pytest.mark.slow
def test_recipe_runs_fast_dev_run_on_a_tiny_manifest(recipe, tmp_path):
    manifests = write_tiny_manifests(tmp_path)
    # (the demo recipes read the embedded clips; the manifest keeps this test the same size for every recipe)
    data = [f"--data.init_args.manifest_dir={manifests}", "--data.init_args.embedded=false",
            "--data.init_args.max_sample_size=16000", "--data.init_args.min_sample_size=8000",
            "--data.init_args.max_tokens=32000", "--data.init_args.num_workers=0"]  # fmt: skip
    small = [f"--model.init_args.model_args.{k}={v}" for k, v in SMALL.items()]
    cli = lightning_cli(["fit", "-c", str(recipe), *CPU, f"--trainer.default_root_dir={tmp_path}",
                         f"--checkpoint.dirpath={tmp_path / 'ckpt'}", *data, *small])  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.model.embed_dim == 32 and cli.datamodule.hparams.manifest_dir == str(manifests)
