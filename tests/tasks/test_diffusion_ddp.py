"""The Diffusion task's validation loss is the same number with 1 and 2 processes (DDP on CPU, gloo)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from derf_zoo.recipes import recipe_path


@pytest.mark.slow
def test_validation_loss_is_the_same_with_one_and_two_processes(tmp_path):
    script = tmp_path / "validate.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from derf_zoo.training import lightning_cli

        devices = sys.argv[1]
        cli = lightning_cli(["validate", "-c", {str(recipe_path("dit/dit_nano_derf_digits.yaml"))!r},
                             "--trainer.accelerator=cpu", f"--trainer.devices={{devices}}", "--trainer.strategy=ddp",
                             "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                             "--trainer.enable_model_summary=false", "--trainer.default_root_dir={tmp_path}",
                             "--checkpoint.dirpath={tmp_path / 'ckpt'}", "--data.init_args.batch_size=50"])
        if cli.trainer.is_global_zero:
            metrics = {{k: float(v) for k, v in cli.trainer.callback_metrics.items()}}
            with open({str(tmp_path)!r} + f"/devices{{devices}}.json", "w") as f:
                json.dump(metrics, f)
    """))  # the same random-init model (seed 0) in both runs: only the number of processes differs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for devices in ("1", "2"):
        out = subprocess.run([sys.executable, str(script), devices], capture_output=True, text=True, timeout=300,
                             env=env, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"devices{d}.json").read_text()) for d in (1, 2))
    # the held-out digits split over 2 ranks (DistributedSampler pads an odd count with a repeat): each counted once
    assert one["val/loss"] == pytest.approx(two["val/loss"], rel=1e-6) and one["val/mse"] == pytest.approx(
        two["val/mse"], rel=1e-6)
