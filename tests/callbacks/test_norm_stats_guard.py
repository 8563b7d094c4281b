"""NormStats' saturation guard (issue 18): it warns on the DNA recipe setting that trapped the nano Derf models, and
stays silent on the fixed recipe."""

import warnings

import pytest
import torch

from derf_zoo.callbacks import NormStats
from derf_zoo.recipes import recipe_path
from derf_zoo.training import fit, lightning_cli

RECIPE = "hyenadna/hyenadna_nano_derf_ecoli.yaml"
#: What the recipe held before issue 18: alpha 0.5 in every site, the reference's embedding std 0.02 at width 32.
TODAY = "--model.init_args.model_args={norm: 'derf(alpha=0.5, shift=0.0)', embed_init_std: 0.02}"


def _fit_recipe(tmp_path, *extra: str) -> tuple[NormStats, list[str]]:
    """30 steps of the nano HyenaDNA recipe (one thread, no validation), with the recipe's NormStats (every 10)."""
    args = ["-c", str(recipe_path(RECIPE)), f"--trainer.default_root_dir={tmp_path}",
            f"--checkpoint.dirpath={tmp_path / 'checkpoints'}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_steps=30",
            "--trainer.limit_val_batches=0", *extra]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli = lightning_cli(args, run=False)
            fit(cli)
    finally:
        torch.set_num_threads(threads)
    guards = [c for c in cli.trainer.callbacks if isinstance(c, NormStats)]
    messages = [str(w.message) for w in caught if "trapped in saturation" in str(w.message)]
    return guards[0], messages


@pytest.mark.slow
def test_guard_fires_on_the_old_dna_recipe_and_names_site_and_step(tmp_path):
    guard, messages = _fit_recipe(tmp_path, TODAY)
    assert "final" in guard.warned, guard.warned
    assert len([m for m in messages if "'final'" in m]) == 1  # once
    step = guard.warned["final"]
    assert f"global step {step}" in messages[0] and 0 < step < 30


@pytest.mark.slow
def test_guard_stays_silent_on_the_fixed_dna_recipe(tmp_path):
    guard, messages = _fit_recipe(tmp_path)
    assert guard.warned == {} and messages == []


def test_guard_arguments_are_checked_by_name():
    with pytest.raises(ValueError, match="warn_saturated"):
        NormStats(warn_saturated=1.5)
    with pytest.raises(ValueError, match="warn_patience"):
        NormStats(warn_patience=0)


def test_guard_needs_both_saturation_and_a_fading_gradient():
    guard = NormStats(warn_patience=2)
    for step, (saturated, grad) in enumerate([(0.0, 1e-3), (0.95, 5e-4), (0.95, 5e-4), (0.5, 1e-6), (0.5, 1e-6)]):
        guard._check_trap("final", saturated, grad, step)  # saturated but the gradient holds; then the reverse
    assert guard.warned == {}
    with pytest.warns(UserWarning, match=r"'final'.*global step 6"):
        for step, grad in ((5, 1e-6), (6, 1e-6)):
            guard._check_trap("final", 0.99, grad, step)
    guard._check_trap("final", 0.99, 1e-6, 7)  # no second warning
    assert guard.warned == {"final": 6}
