"""The conversion recipes (``*_from_*``): a teacher, the fit, a distillation loss; the small ones run on the
embedded data with the released teachers, the paper-scale ones parse (their teachers are Hub downloads)."""

import pytest
import yaml

from derf_zoo.recipes import conversions
from derf_zoo.tasks.distill import FOREIGN
from derf_zoo.training import lightning_cli

RECIPES = conversions()
SMALL = [p for p in RECIPES if p.stem.endswith(("_fmnist", "_digits", "_speech", "_ecoli", "_shakespeare"))]
PAPER = [p for p in RECIPES if p not in SMALL]


def test_every_family_has_a_small_and_a_paper_scale_conversion():
    families = {p.parent.name for p in RECIPES}
    assert families == {"vit", "dit", "wav2vec2", "hyenadna", "caduceus", "gpt2"}
    assert {p.parent.name for p in SMALL} == families and {p.parent.name for p in PAPER} == families


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_names_a_teacher_the_fit_and_its_budget(recipe):
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "Reproduces:" in header and "derf-zoo fit -c" in header and "teacher" in header
    args = yaml.safe_load(recipe.read_text())["model"]["init_args"]
    assert args["teacher"] and args["fit_norms"] > 0 and args["distill_weight"] > 0
    if recipe in PAPER:
        assert args["teacher"].split(":")[0] in FOREIGN  # an upstream checkpoint, imported by its family


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_paper_scale_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "-c", str(recipe), "--print_config"])
    assert exc.value.code == 0 and "teacher:" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SMALL, ids=lambda p: p.stem)
def test_small_recipe_runs_fast_dev_run_with_its_released_teacher(recipe, tmp_path, request):
    data = []
    if recipe.stem.endswith("_fmnist"):  # a stand-in folder in the real IDX format (the real set is 30 MB)
        data = [f"--data.init_args.root={request.getfixturevalue('fmnist_folder')}", "--data.init_args.val_size=20",
                "--data.init_args.batch_size=4", "--data.init_args.num_workers=0"]
    cli = lightning_cli(["fit", "-c", str(recipe), "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu",
                         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                         f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
                         "--model.init_args.fit_norms=1", *data])  # fmt: skip
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.norms_fitted and cli.model.teacher is not None


def test_pretrained_error_names_the_conversion_recipe_beside_the_from_scratch_one():
    from derf_zoo import vit_base_derf
    from derf_zoo.hub import NoPretrainedWeightsError
    from derf_zoo.models._registry import _MODELS
    from derf_zoo.recipes import RECIPES_DIR

    named = {e.conversion for e in _MODELS.values() if e.conversion}
    assert len(named) >= 6 and all((RECIPES_DIR / c.removeprefix("recipes/")).is_file() for c in named)
    with pytest.raises(NoPretrainedWeightsError, match=r"vit_base_derf_in1k\.yaml.*vit_base_derf_from_augreg_in1k"):
        vit_base_derf(pretrained=True)
