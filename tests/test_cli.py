import subprocess
import sys

import pytest

from derf_zoo.cli import main
from derf_zoo.norms import list_norms


def test_norms_table_lists_every_norm_and_plots(tmp_path, capsys):
    png = tmp_path / "norms.png"
    assert main(["norms", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for name in list_norms():
        assert name in out
    assert "erf(u)" in out and "82.8" in out
    assert png.stat().st_size > 20_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "derf_zoo", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "norms" in out.stdout


def test_unknown_subcommand_fails_cleanly(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nroms"])
    assert exc.value.code == 2
    assert "invalid choice: 'nroms'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_finished_fit_keeps_no_model_alive(tmp_path):
    # jsonargparse parks its last parser (and through it the model) in a context variable; the CLI runs in a
    # context of its own so that back-to-back runs (the demo, the recipe tests) don't each keep a model.
    import gc
    import weakref

    from derf_zoo.recipes import recipe_path
    from derf_zoo.training import lightning_cli

    recipe = str(recipe_path("vit/vit_nano_derf_digits.yaml"))
    cli = lightning_cli(
        ["fit", "-c", recipe, "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    )  # fmt: skip
    model = weakref.ref(cli.model)
    del cli
    gc.collect()
    assert model() is None
    assert not (tmp_path / "ckpt").exists()  # and a fast dev run writes no checkpoint


def test_demo_arguments_are_checked(capsys):
    with pytest.raises(SystemExit) as err:
        main(["demo", "--epochs", "0"])
    assert err.value.code == 2 and "epochs >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"unknown part.*nope.*valid: vit, dit"):
        main(["demo", "nope"])
    assert main(["demo", "vit", "--norms", "derf", "rms"]) == 1
    assert "derf-zoo demo: error: " in (err := capsys.readouterr().err) and "no recipe for norm" in err


# ---- the guards of a long fit: pre-emption, one run per folder, a resume that must find its checkpoint ----------

RECIPE = "vit/vit_nano_derf_digits.yaml"
TINY_FIT = ["--model.init_args.model_args.embed_dim=16", "--model.init_args.model_args.depth=1",
            "--model.init_args.model_args.num_heads=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=1"]  # fmt: skip


def _fit_args(tmp_path, *extra):
    from derf_zoo.recipes import recipe_path

    return ["fit", "-c", str(recipe_path(RECIPE)), *TINY_FIT, f"--trainer.default_root_dir={tmp_path}",
            f"--checkpoint.dirpath={tmp_path / 'ckpt'}", *extra]  # fmt: skip


_SLOW_CALLBACK = '''
import os, time, lightning as L

class Slow(L.Callback):
    """From step `at`: mark the step in a file, then take `delay` seconds per step, so a test can signal mid-run."""
    def __init__(self, marker: str = "", at: int = 3, delay: float = 0.3):
        self.marker, self.at, self.delay = marker, at, delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.at:
            if not os.path.exists(self.marker):
                with open(self.marker, "w") as f:
                    f.write(str(trainer.global_step))
            time.sleep(self.delay)
'''


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_exits_143_and_the_lock_keeps_a_second_fit_out(tmp_path):
    import os
    import signal
    import time

    import torch

    from derf_zoo.callbacks.checkpoint import LOCK_NAME, RunFolderError
    from derf_zoo.training import lightning_cli

    (tmp_path / "slow_cb.py").write_text(_SLOW_CALLBACK)
    marker = tmp_path / "step.txt"
    args = _fit_args(tmp_path, "--trainer.max_steps=10000", "--checkpoint.every_n_train_steps=10000",
                     "--trainer.callbacks+=slow_cb.Slow", f"--trainer.callbacks.marker={marker}")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "derf_zoo", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.communicate(timeout=5)[0][-3000:] if proc.poll() is not None else "no step 3"
        lock = tmp_path / "ckpt" / LOCK_NAME
        assert f'"pid": {proc.pid}' in lock.read_text()
        # A second fit into the running fit's folder stops at once, naming the holder.
        with pytest.raises(RunFolderError, match=rf"Another fit is writing checkpoints to .*process {proc.pid} on"):
            lightning_cli(_fit_args(tmp_path, "--trainer.max_steps=1"))
        assert not list((tmp_path / "ckpt").glob("*.ckpt"))  # and wrote nothing
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, out[-3000:]  # not 0: `fit && export` must not export a half-trained model
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] >= 3  # written on SIGTERM (the periodic save never came)
    assert not lock.exists()


def test_a_fit_run_by_the_demo_or_benchmark_that_sigterm_stops_exits_143(tmp_path):
    """``training.fit`` (what the demo and the benchmark run) stops like ``derf-zoo fit``: not reported finished."""
    import os
    import signal

    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from derf_zoo.training import SIGTERM_EXIT_STATUS, fit, lightning_cli

    class SignalAtStep2(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    cli = lightning_cli(_fit_args(tmp_path, "--trainer.max_steps=50")[1:], run=False)
    cli.trainer.callbacks.append(SignalAtStep2())
    with pytest.raises(SIGTERMException) as err:
        fit(cli)
    assert err.value.code == SIGTERM_EXIT_STATUS and cli.trainer.global_step < 50
    assert (tmp_path / "ckpt" / "last.ckpt").exists()


def test_ckpt_path_last_without_a_checkpoint_is_an_error_unless_resume_if_present(tmp_path, capsys):
    from derf_zoo.training import lightning_cli

    assert main(_fit_args(tmp_path, "--trainer.max_steps=2", "--ckpt_path=last")) == 1
    err = capsys.readouterr().err
    assert "no last checkpoint in" in err and str(tmp_path / "ckpt") in err and "resume_if_present" in err
    assert not (tmp_path / "ckpt" / "last.ckpt").exists()

    # The pre-emption pattern: the same command starts the run, then resumes it.
    opt_in = _fit_args(tmp_path, "--ckpt_path=last", "--checkpoint.resume_if_present=true")
    cli = lightning_cli([*opt_in, "--trainer.max_steps=2"])
    assert cli.trainer.global_step == 2 and (tmp_path / "ckpt" / "last.ckpt").exists()
    cli = lightning_cli([*opt_in, "--trainer.max_steps=3"])
    assert cli.trainer.global_step == 3 and cli.trainer.ckpt_path == str(tmp_path / "ckpt" / "last.ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=0-step=3.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_a_fresh_fit_into_a_used_folder_is_an_error_and_overwrite_moves_the_old_run_aside(tmp_path, capsys):
    import torch

    from derf_zoo.training import lightning_cli

    lightning_cli(_fit_args(tmp_path, "--trainer.max_steps=2"))
    folder = tmp_path / "ckpt"
    first = sorted(p.name for p in folder.iterdir())
    assert first == ["epoch=0-step=2.ckpt", "last.ckpt"]  # and no lock left behind

    assert main(_fit_args(tmp_path, "--trainer.max_steps=1")) == 1
    err = capsys.readouterr().err
    assert f"{folder} already holds checkpoints" in err and "--ckpt_path last" in err and "--overwrite" in err
    assert sorted(p.name for p in folder.iterdir()) == first  # untouched: no last-v1.ckpt

    cli = lightning_cli(_fit_args(tmp_path, "--trainer.max_steps=1", "--overwrite=true"))
    assert cli.trainer.global_step == 1
    (aside,) = folder.glob("replaced-*")
    assert sorted(p.name for p in aside.iterdir()) == first
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["epoch=0-step=1.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 1
    # --overwrite cannot also resume from the folder it clears.
    assert main(_fit_args(tmp_path, "--trainer.max_steps=2", "--overwrite=true", "--ckpt_path=last")) == 1
    assert "drop --overwrite (or pass --no_overwrite) to resume" in capsys.readouterr().err


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    import json
    import socket

    from derf_zoo.callbacks.checkpoint import LOCK_NAME
    from derf_zoo.training import lightning_cli

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "ckpt").mkdir()
    lock = tmp_path / "ckpt" / LOCK_NAME
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier"}))
    with pytest.warns(UserWarning, match=f"Taking over the lock .* process {int(dead.stdout)}"):
        cli = lightning_cli(_fit_args(tmp_path, "--trainer.max_steps=1"))
    assert cli.trainer.global_step == 1 and not lock.exists()


def test_a_bad_batch_size_in_a_recipe_is_a_clear_error(capsys):
    from derf_zoo.recipes import recipe_path

    for value in ("-3", "0"):
        with pytest.raises(SystemExit) as exc:
            main(["fit", "-c", str(recipe_path(RECIPE)), f"--data.init_args.batch_size={value}"])
        assert exc.value.code == 2
        assert "data (DigitsDataModule): batch_size must be an integer >= 1" in capsys.readouterr().err


def test_bad_input_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    import torch

    # A diverging fit (lr 1e12): the non-finite loss arrives as one line naming the step and the fix, exit 1.
    diverging = _fit_args(tmp_path, "--trainer.max_steps=5", "--model.init_args.optimizer.init_args.lr=1e12")
    assert main(diverging) == 1
    err = capsys.readouterr().err
    assert "derf-zoo fit: error: Non-finite training loss" in err and "Traceback" not in err
    assert "nonfinite: skip" in err
    with pytest.raises(FloatingPointError, match="Non-finite training loss"):
        main([*diverging, "--overwrite=true", "--debug"])
    if not torch.cuda.is_available():  # Lightning's "no GPU" is a misconfiguration: one line too
        assert main(_fit_args(tmp_path, "--trainer.max_steps=1", "--trainer.accelerator=gpu")) == 1
        assert "derf-zoo fit: error: " in capsys.readouterr().err
    assert main(["--debug", "norms"]) == 0  # --debug anywhere on the line; the environment is left as it was
    import os

    assert "DERF_ZOO_DEBUG" not in os.environ
