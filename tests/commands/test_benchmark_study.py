"""``derf-zoo benchmark fmnist --grid``: the pre-registered study file, its cells, resuming and the running record."""

import json
from pathlib import Path

import pytest

from derf_zoo.commands.benchmark import main
from derf_zoo.commands.benchmark.claim import claim_run
from derf_zoo.commands.benchmark.study import load_study

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT / "benchmarks/results/generalization_fmnist_grid.yaml"
TINY = ["--threads", "1", "--set", "data.init_args.val_size=20", "--set", "data.init_args.batch_size=8",
        "--set", "trainer.accelerator=cpu", "--set", "trainer.limit_train_batches=2"]  # fmt: skip


def test_the_preregistered_grid_is_the_issues():
    study = load_study(GRID)
    assert list(study.norms) == ["layernorm", "derf_auto", "derf"]
    cells = {c.name: c for c in study.cells}
    assert [(c.epochs, c.seeds, c.train_size) for c in study.cells[:3]] == [(3, 5, None), (9, 5, None), (27, 3, None)]
    assert (cells["n6000_60ep"].train_size, cells["n6000_60ep"].epochs, cells["n6000_60ep"].hflip) == (6000, 60, False)
    aug = cells["n6000_60ep_aug"]
    assert (aug.train_size, aug.max_shift, aug.hflip, aug.seeds) == (6000, 2, True, 5)
    assert "--data.init_args.train_size=6000" in aug.overrides() and "--data.init_args.hflip=true" in aug.overrides()


def test_bad_study_files_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsuite: fmnist\nnorms: [layernorm]\ncells:\n  - {name: a, epochs: 3, seeds: 2, lr: 1}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr'\]"):
        load_study(bad)
    bad.write_text("name: x\nsuite: fmnist\nnorms: [layernorm]\ncells:\n  - {name: a, epochs: 0, seeds: 2}\n")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        load_study(bad)


@pytest.mark.slow
def test_a_tiny_study_runs_resumes_and_records_each_run(fmnist_folder, tmp_path, capsys, collect_garbage):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: tiny\nsuite: fmnist\nnorms: [layernorm, derf]\ncells:\n"
                    "  - {name: short, epochs: 1, seeds: 1}\n"
                    "  - {name: small_aug, epochs: 1, seeds: 1, train_size: 20, max_shift: 1, hflip: true}\n")
    out, record = tmp_path / "study", tmp_path / "records.jsonl"
    argv = ["fmnist", "--grid", str(grid), "--out", str(out), "--data-root", str(fmnist_folder), *TINY]
    assert main([*argv, "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "2 cells, 4 runs, 0 recorded" in listed and "--data.init_args.train_size=20" in listed
    assert main([*argv, "--dry-run", "--shard", "1/2"]) == 0  # runs 1 and 3: derf in each cell
    assert [line.split()[1:3] for line in capsys.readouterr().out.splitlines() if "todo" in line] == [
        ["short", "derf"], ["small_aug", "derf"]]  # fmt: skip
    assert main([*argv, "--cells", "small_aug", "--record", str(record)]) == 0
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["cell"], r["norm"]) for r in lines] == [("small_aug", "layernorm"), ("small_aug", "derf")]
    assert all(r["n_train"] == 20 and 0 <= r["eval_train_acc1"] <= 1 for r in lines)
    capsys.readouterr()
    with claim_run(out / "short/runs/layernorm/seed0") as mine:  # another process is training this run
        assert mine
        assert main([*argv, "--record", str(record)]) == 0  # resumes: only the other cell is left, one run of it held
    printed = capsys.readouterr().out
    assert "4 runs, 2 recorded" in printed and "layernorm seed 0: skipped, another process is training it" in printed
    assert main([*argv, "--record", str(record)]) == 0  # released (or its process died): this process takes it
    assert [(r["cell"], r["norm"]) for r in map(json.loads, record.read_text().splitlines())][2:] == [
        ("short", "derf"), ("short", "layernorm")]  # fmt: skip
    assert (out / "short/runs/derf/seed0/result.json").is_file()
    with pytest.raises(ValueError, match="--grid fixes the norms and the axes"):
        main([*argv, "--epochs", "2", "--dry-run"])
