"""Damaged benchmark records (truncated, empty, not numeric) are named and skipped, in --dry-run and --report-only."""

import json

import pytest

from derf_zoo.commands.benchmark import main


def _record(norm: str, seed: int, acc: float) -> dict:
    return {"settings": {"recipe": "vit/vit_mini_fmnist.yaml", "recipe_sha256": "0" * 64, "overrides": []},
            "machine": {"platform": "p", "cpu": "c", "cpu_count": 2, "torch_threads": 1, "torch": "t", "python": "3"},
            "norm": norm, "spec": norm, "seed": seed, "test_acc1": acc, "eval_train_loss": 0.3, "seconds": 1.0,
            "alphas": {}, "curves": {"train/loss_epoch": [1.0], "val/acc1": [acc], "val/loss": [0.5]},
            "parameters": 10, "epochs": 1, "steps": 2, "n_train": 8, "n_val": 2, "n_test": 4}  # fmt: skip


def test_damaged_records_are_named_and_skipped(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = _record("layernorm", 0, 0.8)
    text = json.dumps(good)
    damaged = {"layernorm/seed1": text[: len(text) // 2], "derf/seed0": "{}", "derf/seed1": "[]",
               "rmsnorm/seed0": json.dumps({**good, "norm": "rmsnorm", "test_acc1": "0.8"})}  # fmt: skip
    for folder, content in {"layernorm/seed0": text, **damaged}.items():
        (runs / folder).mkdir(parents=True)
        (runs / folder / "result.json").write_text(content)
    with pytest.warns(UserWarning) as caught:
        assert main(["fmnist", "--out", str(tmp_path), "--report-only"]) == 0
    said = "\n".join(str(w.message) for w in caught)
    for folder in damaged:
        assert f"Skipping the run record {runs / folder / 'result.json'}" in said
    assert "cannot be read as JSON" in said and "'test_acc1' is '0.8', not a float" in said
    assert "it holds {}, not a run's record" in said and "it holds [], not a run's record" in said
    assert "LayerNorm" in (tmp_path / "results.md").read_text()  # the good record is reported
    capsys.readouterr()
    (runs / "layernorm/seed0/result.json").unlink()  # (its made-up settings are not this grid's)
    argv = ["fmnist", "--out", str(tmp_path), "--norms", "layernorm", "derf", "--seeds", "2", "--dry-run"]
    with pytest.warns(UserWarning, match=r"derf/seed0/result\.json: it holds \{\}"):
        assert main(argv) == 0  # was a KeyError on 'settings'
    out = capsys.readouterr().out
    assert "0 already recorded" in out and "4 to run" in out  # damaged records count as not done
