"""Long jobs checkpoint and resume exactly; DDP keeps replicas identical (2 CPU processes, gloo)."""

import copy
import os
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch

from derf_zoo.recipes import recipe_path
from derf_zoo.training import lightning_cli

RECIPE = str(recipe_path("vit/vit_nano_derf_digits.yaml"))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]


class _Killed(RuntimeError):
    pass


class _KillAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise _Killed(f"simulated kill at step {self.step}")


@pytest.mark.slow
def test_killed_fit_resumes_with_the_same_step_and_optimizer_state(tmp_path):
    common = ["-c", RECIPE, *QUIET, f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path}",
              "--checkpoint.every_n_train_steps=5", "--checkpoint.monitor=null", "--trainer.max_steps=12",
              "--trainer.limit_val_batches=1"]  # fmt: skip
    cli = lightning_cli(common, run=False)
    cli.trainer.callbacks.append(_KillAt(8))
    with pytest.raises(_Killed):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False, map_location="cpu")  # our own file
    assert saved["global_step"] == 5

    resumed = lightning_cli(common, run=False)
    restored = {}

    class _Capture(L.Callback):
        def on_train_start(self, trainer, pl_module):
            restored["step"] = trainer.global_step
            restored["optimizer"] = copy.deepcopy(trainer.optimizers[0].state_dict())  # training goes on in place
            restored["alpha"] = pl_module.model.backbone.blocks[0].norm1.alpha.detach().clone()
            restored["calibrated"] = pl_module.alpha_calibrated

    resumed.trainer.callbacks.append(_Capture())
    resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path="last")
    assert restored["step"] == 5 and restored["calibrated"]  # no second calibration on resume
    expected = saved["optimizer_states"][0]["state"]
    for key, state in restored["optimizer"]["state"].items():
        torch.testing.assert_close(state["exp_avg"], expected[key]["exp_avg"])
        torch.testing.assert_close(state["exp_avg_sq"], expected[key]["exp_avg_sq"])
    torch.testing.assert_close(restored["alpha"], saved["state_dict"]["model.backbone.blocks.0.norm1.alpha"])
    assert resumed.trainer.global_step == 12


@pytest.mark.slow
def test_a_checkpoint_with_corrupted_optimizer_state_does_not_resume(tmp_path):
    from derf_zoo.tasks.checkpoint import CHECKSUM_KEY, CorruptCheckpointError

    tiny = ["-c", RECIPE, *QUIET, "--model.init_args.model_args.embed_dim=16", "--model.init_args.model_args.depth=1",
            "--model.init_args.model_args.num_heads=1", f"--trainer.default_root_dir={tmp_path}",
            f"--checkpoint.dirpath={tmp_path}", "--trainer.limit_val_batches=1"]  # fmt: skip
    cli = lightning_cli([*tiny, "--trainer.max_steps=2"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    path = tmp_path / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)

    # Flip the bytes of a few values inside AdamW's first moment: the file still loads, the numbers are wrong.
    exp_avg = ckpt["optimizer_states"][0]["state"][0]["exp_avg"]
    raw = exp_avg.reshape(-1).view(torch.uint8)
    raw[:8] = 255 - raw[:8]
    torch.save(ckpt, path)
    resumed = lightning_cli([*tiny, "--trainer.max_steps=4"], run=False)
    with pytest.raises(CorruptCheckpointError, match=rf"Checkpoint {path} is corrupted: .* in optimizer_states "):
        resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path="last")
    assert set(ckpt[CHECKSUM_KEY]["sections"]) == {"state_dict", "optimizer_states", "lr_schedulers"}

    # A checkpoint from before checksums resumes, with a warning.
    del ckpt[CHECKSUM_KEY]
    torch.save(ckpt, path)
    resumed = lightning_cli([*tiny, "--trainer.max_steps=3"], run=False)
    with pytest.warns(UserWarning, match="has no derf_zoo checksum"):
        resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path="last")
    assert resumed.trainer.global_step == 3


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, torch, lightning as L
        from derf_zoo.training import lightning_cli

        class Save(L.Callback):
            def on_train_end(self, trainer, pl_module):
                path = os.path.join({str(tmp_path)!r}, f"rank{{trainer.global_rank}}.pt")
                torch.save(pl_module.model.state_dict(), path)

        cli = lightning_cli(["-c", {RECIPE!r}, "--trainer.accelerator=cpu", "--trainer.devices=2",
                             "--trainer.strategy=ddp", "--trainer.max_steps=4", "--trainer.limit_val_batches=1",
                             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                             "--trainer.logger=false", "--checkpoint.dirpath={tmp_path / "ckpt"}",
                             "--trainer.default_root_dir={tmp_path}"], run=False)
        cli.trainer.callbacks.append(Save())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-4000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    # The recipe asks for alpha=auto: calibration ran on both ranks from rank 0's batch.
    assert rank0["backbone.blocks.0.norm1.alpha"].item() != 0.5
