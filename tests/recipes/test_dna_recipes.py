"""The DNA recipes: the papers' settings as written, and a fast dev run of each on tiny local data."""

import random

import pytest
import yaml

from derf_zoo.models import get_model_entry
from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.training import lightning_cli

FAMILIES = ("hyenadna", "caduceus")  # one recipe folder per family
PRETRAIN = trained_from_scratch([p for f in FAMILIES for p in list_recipes(f"{f}/*_hg38.yaml")])
FINETUNE = [p for f in FAMILIES for p in list_recipes(f"{f}/*_genomic_benchmarks.yaml")]
DEMO = trained_from_scratch([p for f in FAMILIES for p in list_recipes(f"{f}/*_ecoli*.yaml")])
CPU = ["--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
       "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
#: A small stand-in of each architecture keeps a CPU step fast (the full sizes are covered by the model tests).
SMALL = {"hyenadna": ["--model.init_args.model_args.d_model=16", "--model.init_args.model_args.max_seq_len=130"],
         "caduceus": ["--model.init_args.model_args.d_model=8", "--model.init_args.model_args.n_layer=1"]}


def header(recipe) -> str:
    return "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))


def write_genome(root):
    """A two-record FASTA and a BED whose 4th column splits it (the references' sequences_human.bed layout)."""
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    records = {name: "".join(rng.choice("ACGT") for _ in range(3000)) for name in ("chr1", "chr2")}
    (root / "tiny.fa").write_text("".join(f">{n}\n{s}\n" for n, s in records.items()))
    (root / "tiny.bed").write_text("chr1\t0\t2500\ttrain\nchr2\t0\t1500\ttrain\nchr2\t1500\t2400\tvalid\n"
                                   "chr2\t2400\t3000\ttest\n")  # fmt: skip
    return root / "tiny.fa", root / "tiny.bed"


def write_genomic_benchmark(root, task="tiny_task", n=12):
    rng = random.Random(1)
    for split in ("train", "test"):
        for label in ("negative", "positive"):
            folder = root / task / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}.txt").write_text("".join(rng.choice("ACGT") for _ in range(rng.randint(40, 90))))
    return root, task


def family(recipe) -> str:
    return yaml.safe_load(recipe.read_text())["model"]["init_args"]["model"].split("_")[0]


def test_every_model_and_norm_has_its_recipes():
    stems = {p.stem for p in PRETRAIN + FINETUNE}
    paper = ["hyenadna_tiny_1k_derf", "hyenadna_tiny_1k_ln"]
    paper += [f"caduceus_{v}_1k_{n}" for v in ("ph", "ps") for n in ("derf", "rmsnorm")]
    for model in paper:
        assert {f"{model}_hg38", f"{model}_genomic_benchmarks"} <= stems
        assert get_model_entry(model).recipe == f"recipes/{model.split('_')[0]}/{model}_hg38.yaml"
    assert len(PRETRAIN) == len(FINETUNE) == len(paper)
    for model in ("hyenadna_nano_derf", "hyenadna_nano_ln", "caduceus_nano_derf", "caduceus_nano_rmsnorm"):
        assert get_model_entry(model).recipe == f"recipes/{model.split('_')[0]}/{model}_ecoli.yaml"
        assert {p.stem for p in DEMO} >= {f"{model}_ecoli", f"{model}_ecoli_vs_lambda"}


@pytest.mark.parametrize("recipe", PRETRAIN, ids=lambda p: p.stem)
def test_pretraining_recipe_holds_table_20(recipe):
    cfg = yaml.safe_load(recipe.read_text())
    text = header(recipe)
    assert "Tab. 20" in text and "srun" in text and "One GPU" in text and "hg38.ml.fa" in text
    trainer, task, data = cfg["trainer"], cfg["model"]["init_args"], cfg["data"]["init_args"]
    opt = task["optimizer"]["init_args"]
    sequences = trainer["devices"] * trainer["num_nodes"] * trainer["accumulate_grad_batches"] * data["batch_size"]
    if family(recipe) == "hyenadna":
        assert "85.2" in text and "85.7" in text
        assert (opt["lr"], task["mode"], data["seq_len"], data["rc_aug"]) == (6e-4, "causal", 1024, True)
        assert trainer["max_steps"] == 10_000 and sequences == 1024
    else:
        assert "86.9" in text and "87.3" in text
        assert (opt["lr"], task["mode"], task["mlm_probability"]) == (8e-3, "masked", 0.15)
        assert data["rc_aug"] == ("_ph_" in recipe.stem)  # PS is RC-equivariant: no augmentation (Tab. 20)
        assert sequences * data["seq_len"] == 2**20  # Tab. 20's 131,072 x 8 tokens per step
    assert data["mode"] == task["mode"]
    assert ("derf(alpha=0.5" in task["model_args"]["norm"]) == ("_derf_" in recipe.stem)


@pytest.mark.parametrize("recipe", FINETUNE, ids=lambda p: p.stem)
def test_finetuning_recipe_holds_the_papers_protocol(recipe):
    cfg = yaml.safe_load(recipe.read_text())
    assert "Tab. 11" in header(recipe) and "5 seeds" in header(recipe)
    assert cfg["trainer"]["max_epochs"] == 10
    data = cfg["data"]["init_args"]
    assert data["val_fraction"] == 0.1 and data["batch_size"] in (128, 256)
    pretrain = recipe.name.replace("_genomic_benchmarks", "_hg38")
    assert pretrain.replace(".yaml", "") in cfg["model"]["init_args"]["init_from"]


@pytest.mark.parametrize("recipe", PRETRAIN, ids=lambda p: p.stem)
@pytest.mark.slow
def test_pretraining_recipe_runs_fast_dev_run(recipe, tmp_path):
    fasta, bed = write_genome(tmp_path / "genome")
    cli = lightning_cli(
        ["fit", "-c", str(recipe), *CPU, "--trainer.num_nodes=1", "--trainer.strategy=auto",
         "--trainer.accumulate_grad_batches=1", f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ckpt'}", f"--data.init_args.fasta={fasta}", f"--data.init_args.bed={bed}",
         "--data.init_args.seq_len=128", "--data.init_args.batch_size=2",
         "--data.init_args.num_workers=0", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
         *SMALL[family(recipe)]]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.mode == yaml.safe_load(recipe.read_text())["model"]["init_args"]["mode"]


@pytest.mark.parametrize("recipe", FINETUNE, ids=lambda p: p.stem)
@pytest.mark.slow
def test_finetuning_recipe_runs_fast_dev_run(recipe, tmp_path):
    root, task = write_genomic_benchmark(tmp_path / "gb")
    cli = lightning_cli(
        ["fit", "-c", str(recipe), *CPU, f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ckpt'}", f"--data.init_args.root={root}", f"--data.init_args.task={task}",
         "--data.init_args.max_length=96", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
         "--model.init_args.init_from=null", *SMALL[family(recipe)]]
    )  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.datamodule.num_classes == 2 and len(cli.datamodule.val_set) == 2  # 10 % of 24


@pytest.mark.parametrize("recipe", DEMO, ids=lambda p: p.stem)
@pytest.mark.slow
def test_demo_recipe_runs_fast_dev_run_on_the_embedded_genomes(recipe, tmp_path):
    # unchanged sizes: the demo's models are already small; the fine-tuning recipes start from the released weights
    cli = lightning_cli(["fit", "-c", str(recipe), *CPU, f"--trainer.default_root_dir={tmp_path}",
                         f"--checkpoint.dirpath={tmp_path / 'ckpt'}"])  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    if "vs_lambda" in recipe.stem:
        assert cli.model.hparams.init_from == recipe.stem.replace("_ecoli_vs_lambda", ".ecoli")
