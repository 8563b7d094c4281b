"""``derf-zoo benchmark fmnist``: the grid, paired seeds, resuming, the verdicts and the rendered results."""

import hashlib
import json
import math

import pytest
import torch

from derf_zoo.cli import main as cli_main
from derf_zoo.commands import benchmark
from derf_zoo.commands.benchmark import main, plan, resolve_norms, summarise, verdicts
from derf_zoo.hub.manifest import load_manifest
from derf_zoo.training import lightning_cli

TINY = [
    "--epochs", "1", "--threads", "1", "--set", "data.init_args.val_size=20", "--set", "data.init_args.batch_size=8",
    "--set", "trainer.accelerator=cpu", "--set", "trainer.limit_train_batches=2",
]  # fmt: skip


def test_norm_names_and_the_grid():
    assert list(resolve_norms(["default"])) == ["layernorm", "rmsnorm", "dyt", "derf", "derf_auto"]
    assert resolve_norms(["derf_auto"]) == {"derf_auto": "derf(alpha=auto)"}
    everything = resolve_norms(["all"])
    assert {"isru", "arctan", "satursin", "linear_clip", "derf_auto"} <= set(everything)
    assert "identity" not in everything
    with pytest.raises(ValueError, match=r"Unknown benchmark norm 'derff'\. Did you mean 'derf'.*Valid.*rmsnorm"):
        resolve_norms(["derff"])
    runs = plan({"layernorm": "layernorm", "derf": "derf"}, 2)
    assert [(r.norm, r.seed) for r in runs] == [("layernorm", 0), ("derf", 0), ("layernorm", 1), ("derf", 1)]
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        plan({"derf": "derf"}, 0)


def test_bad_command_lines(capsys):
    for argv, message in ((["fmnist", "--seeds", "0"], "must be at least 1"), (["mnist"], "invalid choice"),
                          (["fmnist", "--shard", "4/4"], "0 <= K < N")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fmnist", "--norms", "layernorm", "batchnorm", "--dry-run"])
    err = capsys.readouterr().err
    assert "Unknown benchmark norm 'batchnorm'" in err and "Valid choices:" in err and "derf_auto" in err


def test_seeds_are_paired_across_norms(fmnist_folder, tmp_path):
    """Seed k of every norm starts from the same weights (the norms' own parameters draw no random numbers)."""
    weights = []
    for norm in ("layernorm", "rmsnorm", "derf(alpha=auto)"):
        cli = lightning_cli(
            ["-c", str(benchmark.recipe_path("vit/vit_mini_fmnist.yaml")), "--seed_everything=3",
             f"--model.init_args.model_args.norm={norm}", f"--data.init_args.root={fmnist_folder}",
             f"--trainer.default_root_dir={tmp_path}"], run=False,
        )  # fmt: skip
        weights.append({k: v for k, v in cli.model.model.state_dict().items() if v.ndim >= 2})
    for other in weights[1:]:
        assert weights[0].keys() == other.keys()
        assert all(torch.equal(weights[0][k], other[k]) for k in other)


def _result(norm, seed, acc, loss=0.3):
    return {"norm": norm, "spec": norm, "seed": seed, "test_acc1": acc, "eval_train_loss": loss, "seconds": 60.0,
            "alphas": {} if norm == "layernorm" else {"attn": 0.6, "mlp": 0.5, "final": 0.7}}  # fmt: skip


def test_paired_differences_and_plain_verdicts():
    base = [0.850, 0.860, 0.855, 0.845, 0.852]
    results = [_result("layernorm", s, a) for s, a in enumerate(base)]
    results += [_result("derf", s, a + 0.010 + 0.001 * (s % 2)) for s, a in enumerate(base)]  # always ahead
    results += [_result("dyt", s, a - 0.02) for s, a in enumerate(base)]  # always behind
    results += [_result("rmsnorm", s, a + (0.005 if s % 2 else -0.005)) for s, a in enumerate(base)]  # a coin toss
    results += [_result("isru", 0, 0.9)]  # one seed
    rows = {r["norm"]: r for r in summarise(results)}
    assert list(rows) == ["layernorm", "rmsnorm", "dyt", "derf", "isru"]
    d = rows["derf"]["diff"]
    assert d["n"] == 5 and d["wins"] == 5 and math.isclose(d["mean"], 0.0104, abs_tol=1e-9)
    assert math.isclose(d["half_width"], 2.776 * d["se"])  # t interval with 4 degrees of freedom
    said = dict(zip(["rmsnorm", "dyt", "derf", "isru"], verdicts(list(rows.values()))))
    assert said["derf"].startswith("Derf beats LayerNorm beyond the noise: +1.04 points")
    assert said["dyt"].startswith("DyT is worse than LayerNorm beyond the noise: -2.00 points")
    assert said["rmsnorm"].startswith("RMSNorm does not beat LayerNorm beyond the noise")
    assert "ahead on 2 of 5 seeds" in said["rmsnorm"]
    assert "one seed" in said["isru"]
    assert rows["derf"]["alphas"] == {"attn": 0.6, "mlp": 0.5, "final": 0.7} and rows["layernorm"]["alphas"] == {}


@pytest.mark.slow
def test_a_tiny_grid_runs_resumes_and_renders(fmnist_folder, tmp_path, capsys, collect_garbage):
    out = tmp_path / "bench"
    argv = ["fmnist", "--out", str(out), "--data-root", str(fmnist_folder), "--seeds", "2",
            "--norms", "layernorm", "derf_auto", *TINY]  # fmt: skip
    assert main([*argv, "--dry-run"]) == 0
    assert "4 runs, 0 already recorded" in capsys.readouterr().out and not (out / "runs").exists()

    assert main([*argv, "--shard", "1/2"]) == 0  # runs 1 and 3 of the grid: derf_auto seeds 0 and 1
    assert sorted(p.parent.parent.name + p.parent.name for p in out.glob("runs/*/*/result.json")) == [
        "derf_autoseed0", "derf_autoseed1"]  # fmt: skip
    capsys.readouterr()
    killed = out / "runs/layernorm/seed0/checkpoints"  # what a run killed after its first epoch leaves behind
    killed.mkdir(parents=True)
    (killed / "epoch=0-step=2.ckpt").write_bytes(b"a killed run's checkpoint")
    assert main(argv) == 0  # resumes: only LayerNorm's two runs are left, the killed one redone from its start
    printed = capsys.readouterr().out
    assert "4 runs, 2 already recorded" in printed and "[1/2] layernorm seed 0" in printed
    assert [p.read_bytes() for p in killed.glob("replaced-*/epoch=0-step=2.ckpt")] == [b"a killed run's checkpoint"]

    record = json.loads((out / "runs/derf_auto/seed1/result.json").read_text())
    assert record["spec"] == "derf(alpha=auto)" and record["n_test"] == 20 and record["n_val"] == 20
    assert 0 <= record["test_acc1"] <= 1 and record["eval_train_loss"] > 0
    assert set(record["alphas"]) == {"attn", "mlp", "final"}
    assert record["curves"]["val/acc1"] and record["settings"]["recipe"] == "vit/vit_mini_fmnist.yaml"
    assert (out / "runs/derf_auto/seed1/model/model.safetensors").is_file()
    page = (out / "results.md").read_text()
    assert "| Derf (alpha=auto) | `derf(alpha=auto)` | 2 |" in page and "over 2 paired seeds" in page
    assert (out / "curves.png").stat().st_size > 10_000 and json.loads((out / "results.json").read_text())["verdicts"]

    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "4 runs, 4 already recorded" in listed and listed.count("  done  ") == 4 and "todo" not in listed
    (out / "results.md").unlink()
    assert main(["fmnist", "--out", str(out), "--report-only"]) == 0 and (out / "results.md").is_file()

    # `derf-zoo release fmnist` picks the better Derf row and LayerNorm, the median seed of each, from these records.
    dest = tmp_path / "release"
    assert cli_main(["release", "fmnist", "--out", str(out), "--dest", str(dest)]) == 0
    entries = {w.name: w for w in load_manifest(dest / "manifest.yaml")}
    assert set(entries) == {"vit_mini_derf.fmnist", "vit_mini_ln.fmnist"}
    for name, w in entries.items():
        weights = (dest / name / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == w.sha256 and w.metrics["acc1"] <= 100
        assert json.loads((dest / name / "config.json").read_text())["architecture"] == name.split(".")[0]

    # Another epoch budget is another grid: it must not be mixed into these records.
    with pytest.raises(ValueError, match="recorded with other settings"):
        main([*argv, "--epochs", "2", "--dry-run"])


def test_weights_of_a_run_load_back(fmnist_folder, tmp_path, collect_garbage):
    from derf_zoo import from_pretrained

    out = tmp_path / "bench"
    main(["fmnist", "--out", str(out), "--data-root", str(fmnist_folder), "--seeds", "1", "--norms", "derf", *TINY])
    model = from_pretrained(str(out / "runs/derf/seed0/model"))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    config = json.loads((out / "runs/derf/seed0/model/config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28] and config["pretrained_cfg"]["mean"] == [0.2860]
