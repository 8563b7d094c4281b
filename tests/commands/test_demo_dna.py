"""The demo's DNA part: it runs end to end through `derf-zoo demo dna` on a tiny budget and says who wins."""

from pathlib import Path

import pytest

from derf_zoo.cli import main
from derf_zoo.commands.demo import dna
from derf_zoo.commands.demo.part import PartResult, verdict


def _run(test_acc, n=100, norm="Derf", val_loss=1.38):
    return dna.RunResult(model="HyenaDNA", norm=norm, val_loss=val_loss, val_perplexity=3.97, val_base_acc=0.3,
                         finetune_val_acc=test_acc, test_acc=test_acc, val_count=n, test_count=n, seconds=1.0,
                         pretrain_checkpoint=Path("x.ckpt"))  # fmt: skip


def test_verdict_compares_the_gap_with_the_binomial_noise():
    wide = dna.verdict(_run(0.9, n=1000), _run(0.6, n=1000, norm="LayerNorm"))
    assert "Derf wins" in wide and "exceeds twice the evaluation noise" in wide
    # 2 SE of the difference of two 0.5-accuracies on 100 windows is 14.1 points: a 4-point gap is noise
    assert dna.noise(_run(0.5), _run(0.5)) == pytest.approx(2 * (2 * 0.25 / 100) ** 0.5)
    close = dna.verdict(_run(0.62), _run(0.66, norm="LayerNorm"))
    assert "LayerNorm wins" in close and "does not separate them" in close and "13.6 points" in close
    assert "tie" in dna.verdict(_run(0.7), _run(0.7, norm="LayerNorm"))


def test_verdict_names_no_winner_when_both_stay_at_chance():
    # 50% +- 10 points (2 SE on 100 windows): 52% and 56% are chance, whoever is ahead
    stuck = dna.verdict(_run(0.52, val_loss=1.4149), _run(0.56, norm="LayerNorm"))
    assert "neither model rose above chance" in stuck and "cannot compare" in stuck and "wins" not in stuck
    assert "Derf pretraining did not beat ln 4" in stuck and "LayerNorm pretraining" not in stuck


def test_summary_names_each_familys_own_baseline():
    row = PartResult(family="Caduceus", data="E. coli vs lambda", metric="test top-1 (%)", higher_is_better=True,
                     derf=60.0, baseline_value=75.0, noise=5.0, baseline="RMSNorm")  # fmt: skip
    assert verdict(row) == "RMSNorm better, beyond the noise"
    row.own_verdict = "both at chance: no comparison"  # what the DNA part sets when neither model learned the task
    assert verdict(row) == "both at chance: no comparison"


def test_unknown_norm_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"no recipe for norm\(s\) \['dyt'\]; valid: derf, ln, rmsnorm"):
        dna.run_part(Path("unused"), norms=["dyt"])


@pytest.mark.slow
def test_demo_dna_runs_end_to_end_and_prints_the_table_and_verdict(tmp_path, monkeypatch, capsys):
    # a few steps per run: the point is the pipeline (pretrain -> checkpoint -> fine-tune -> test -> verdict)
    monkeypatch.setattr(dna, "TRAINER_ARGS", ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
                                              "--trainer.num_sanity_val_steps=0"])  # fmt: skip
    assert main(["demo", "dna", "--out", str(tmp_path), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    families = [m.family for m in dna.available_models()]
    assert "HyenaDNA" in families
    for family in families:
        assert f"{family}: " in out and any(v in out for v in ("does not separate them", "exceeds twice", "tie",
                                                               "cannot compare the norms"))
    assert "pretrain val loss" in out and "test top-1" in out and "(LayerNorm)" in out
    assert "3-mer logistic regression" in out and "final site saturated" in out and "HyenaDNA pretraining: Derf" in out
    assert "% (final)" in out  # the Derf rows report their final site's saturated fraction
    assert (tmp_path / "dna" / "hyenadna_nano_derf_ecoli" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "dna" / "hyenadna_nano_ln_ecoli_vs_lambda" / "checkpoints" / "last.ckpt").is_file()
