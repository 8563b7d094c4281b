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


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "derf_zoo", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "norms" in out.stdout


def test_unknown_subcommand_fails_cleanly(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nroms"])
    assert exc.value.code == 2
    assert "invalid choice: 'nroms'" in capsys.readouterr().err


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
    with pytest.raises(ValueError, match="no recipe for norm"):
        main(["demo", "vit", "--norms", "derf", "rms"])
