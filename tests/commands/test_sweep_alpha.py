"""derf-zoo sweep-alpha: one folder per grid point with its alphas, a finished point skipped on rerun."""

import json

import pytest

from derf_zoo.cli import main
from derf_zoo.recipes import recipe_path

SMALL = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.logger=false", "--data.init_args.samples_per_epoch=4", "--data.init_args.batch_size=2",
         "--data.init_args.max_eval_windows=2", "--model.init_args.model_args.n_layer=1"]


@pytest.mark.slow
def test_the_grid_runs_each_point_once_and_resumes(tmp_path, capsys):
    recipe = recipe_path("gpt2/gpt2_nano_derf_shakespeare.yaml")
    args = ["sweep-alpha", "-c", str(recipe), "--out", str(tmp_path), "--attn", "0.5", "2", "--other", "0.3", "--",
            *SMALL]
    assert main(args) == 0
    result = json.loads((tmp_path / "attn2_other0.3" / "result.json").read_text())
    assert result["attn_alpha"] == 2.0 and result["other_alpha"] == 0.3 and result["steps"] == 2
    grid = (tmp_path / "grid.md").read_text()
    assert grid.count("| 0.3 |") == 2
    capsys.readouterr()
    assert main(args) == 0  # everything done: nothing retrained
    assert capsys.readouterr().out.count("done earlier") == 2


def test_dry_run_prints_one_resumable_command_per_point(tmp_path, capsys):
    recipe = recipe_path("gpt2/gpt2_124m_derf_openwebtext.yaml")
    assert main(["sweep-alpha", "-c", str(recipe), "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 16 and all("--ckpt_path=last" in line for line in lines)
    assert "attn_alpha=4.0" in lines[-1] and "final_alpha=1.0" in lines[-1]
