"""SIGTERM under DDP (2 CPU processes, gloo): whichever process gets the signal, the ranks agree at a step
boundary, stop after the same step, rank 0 saves last.ckpt, the lock goes, and the fit exits 143."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from derf_zoo.callbacks.checkpoint import LOCK_NAME
from derf_zoo.recipes import recipe_path

_PROBE = '''
import json, os, time, lightning as L

class Probe(L.Callback):
    """Each rank records its pid and step (from step 2, then slows to `delay` s a step so the test can signal
    mid-run) and the step it stopped at."""
    def __init__(self, folder: str = "", delay: float = 0.15):
        self.folder, self.delay = folder, delay

    def _write(self, trainer, name, **record):
        with open(os.path.join(self.folder, f"{name}{trainer.global_rank}.json"), "w") as f:
            json.dump({"pid": os.getpid(), "step": trainer.global_step, **record}, f)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= 2:
            self._write(trainer, "running")
            time.sleep(self.delay)

    def on_exception(self, trainer, pl_module, exception):
        self._write(trainer, "stopped", exception=type(exception).__name__)
'''


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1:2] == ["Z"] for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the second rank exit")
@pytest.mark.parametrize("target", ["launcher", "rank1", "launcher", "rank1"])
def test_sigterm_to_any_rank_stops_all_together_saves_and_exits_143(tmp_path, target):
    (tmp_path / "probe.py").write_text(_PROBE)
    args = ["fit", "-c", str(recipe_path("vit/vit_nano_derf_digits.yaml")), "--model.init_args.model_args.embed_dim=16",
            "--model.init_args.model_args.depth=1", "--model.init_args.model_args.num_heads=1",
            "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_steps=100000",
            "--trainer.limit_val_batches=1", "--trainer.val_check_interval=7", "--checkpoint.every_n_train_steps=0",
            f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
            "--trainer.callbacks+=probe.Probe", f"--trainer.callbacks.folder={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "derf_zoo", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    running = [tmp_path / f"running{r}.json" for r in (0, 1)]
    rank1 = None
    try:
        deadline = time.monotonic() + 180
        while not all(p.exists() for p in running) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(p.exists() for p in running), proc.communicate(timeout=5)[0][-3000:] if proc.poll() else "slow"
        rank1 = json.loads(running[1].read_text())["pid"]
        time.sleep(0.3 * torch.rand(()).item())  # anywhere in a step: forward, all-reduce, sleep
        os.kill(proc.pid if target == "launcher" else rank1, signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
        deadline = time.monotonic() + 30
        while not _gone(rank1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(rank1), "the second rank is still running"
    finally:
        proc.kill()
        if rank1 is not None and not _gone(rank1):
            os.kill(rank1, signal.SIGKILL)
    assert proc.returncode == 143, out[-4000:]
    stopped = [json.loads((tmp_path / f"stopped{r}.json").read_text()) for r in (0, 1)]
    assert [s["exception"] for s in stopped] == ["SIGTERMException"] * 2, out[-4000:]
    assert stopped[0]["step"] == stopped[1]["step"], stopped  # the same step boundary on both ranks
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == stopped[0]["step"]
    assert not (tmp_path / "ckpt" / LOCK_NAME).exists()
