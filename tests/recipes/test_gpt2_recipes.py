"""The GPT-2 recipes: Tab. 21's settings as written, and a fast dev run of each on a tiny stand-in."""

import pytest
import yaml

from derf_zoo.data.text import prepare_text
from derf_zoo.models import get_model_entry
from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.training import lightning_cli

PAPER = trained_from_scratch(list_recipes("gpt2/*_openwebtext.yaml"))
NANO = trained_from_scratch(list_recipes("gpt2/*_shakespeare.yaml"))
CPU = ["--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1",
       "--trainer.strategy=auto", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false",
       "--trainer.enable_model_summary=false"]
#: A small stand-in of the 124M model keeps a CPU step fast (the full size is covered by the model tests).
SMALL = ["--model.init_args.model_args.n_embd=16", "--model.init_args.model_args.n_layer=1",
         "--model.init_args.model_args.n_head=2", "--model.init_args.model_args.n_positions=32",
         "--data.init_args.seq_len=32", "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
         "--data.init_args.max_eval_windows=4"]


def test_every_norm_has_its_recipes():
    assert sorted(p.stem for p in PAPER) == [f"gpt2_124m_{n}_openwebtext" for n in ("derf", "dyt", "ln", "rmsnorm")]
    assert sorted(p.stem for p in NANO) == [f"gpt2_nano_{n}_shakespeare" for n in ("derf", "dyt", "ln", "rmsnorm")]
    for norm in ("derf", "dyt", "ln", "rmsnorm"):
        assert get_model_entry(f"gpt2_{norm}").recipe == f"recipes/gpt2/gpt2_124m_{norm}_openwebtext.yaml"


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_paper_recipe_holds_tab21(recipe):
    cfg = yaml.safe_load(recipe.read_text())
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "Tab. 12" in header and "Tab. 21" in header and "srun" in header and "One GPU" in header
    t, m, d = cfg["trainer"], cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert (t["max_steps"], t["gradient_clip_val"], t["precision"]) == (300_000, 1.0, "bf16-mixed")
    opt = m["optimizer"]["init_args"]
    assert (opt["lr"], opt["weight_decay"], opt["betas"]) == (6e-4, 0.1, [0.9, 0.95])
    assert (m["schedule"]["name"], m["schedule"]["warmup_steps"]) == ("cosine", 2000)
    # 12 windows x 1,024 tokens x (8 GPUs x 5 accumulation) = 491,520 tokens per step
    assert d["batch_size"] * d["seq_len"] * t["devices"] * t["accumulate_grad_batches"] == 491_520
    assert m["model_args"]["dropout"] == 0.0
    pointwise = "derf" in recipe.stem or "dyt" in recipe.stem
    assert m["model_args"]["embed_scale"] is pointwise
    if pointwise:
        assert m["model_args"]["attn_alpha"] == m["model_args"]["mlp_alpha"] == m["model_args"]["final_alpha"] == 1.0
        assert "derf-zoo sweep-alpha -c" in header


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
@pytest.mark.slow
def test_paper_recipe_runs_fast_dev_run_on_tiny_bins(recipe, tmp_path):
    src = tmp_path / "text.txt"
    src.write_text("the quick brown fox jumps over the lazy dog. " * 80)
    prepare_text(tmp_path / "bins", files=[src], tokenizer="char")
    lightning_cli(["fit", "-c", str(recipe), *CPU, *SMALL, f"--data.init_args.data_dir={tmp_path / 'bins'}",
                   "--model.init_args.optimizer.init_args.fused=false",
                   f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path / 'ck'}"])


@pytest.mark.parametrize("recipe", NANO, ids=lambda p: p.stem)
@pytest.mark.slow
def test_nano_recipe_runs_fast_dev_run(recipe, tmp_path):
    cli = lightning_cli(["fit", "-c", str(recipe), *CPU, f"--trainer.default_root_dir={tmp_path}",
                         f"--checkpoint.dirpath={tmp_path / 'ck'}", "--data.init_args.max_eval_windows=2",
                         "--data.init_args.batch_size=2"])
    assert cli.model.model.n_positions == cli.datamodule.hparams.seq_len == 64
