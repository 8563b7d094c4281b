"""`derf-zoo convert`: a released LayerNorm model becomes a fitted Derf Hub folder that loads and matches."""

import json

import pytest
import torch

from derf_zoo import create_model, from_pretrained
from derf_zoo.cli import main
from derf_zoo.norms import Derf

RECIPE = "recipes/vit/vit_nano_ln_digits.yaml"


def test_convert_writes_a_fitted_folder_that_loads(tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert", "vit_nano_ln.digits", "--calib", RECIPE, "--batches", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fit of 9 layer(s)" in printed and "wrote" in printed
    model = from_pretrained(out)
    assert any(isinstance(m, Derf) for m in model.modules())
    assert json.loads((out / "config.json").read_text())["model_args"]["norm"] == "derf"
    card = (out / "README.md").read_text()
    assert "converted from vit_nano_ln.digits" in card and "Not distilled" in card
    # the fitted model is close to its teacher, much closer than the naive conversion
    teacher = create_model("vit_nano_ln.digits", pretrained=True).eval()
    naive = create_model("vit_nano_ln", norm="derf").eval()
    naive.load_state_dict({**naive.state_dict(), **{k: v for k, v in teacher.state_dict().items()}})
    from derf_zoo.data import DigitsDataModule

    data = DigitsDataModule(batch_size=128)
    data.setup("validate")
    x, _ = next(iter(data.val_dataloader()))  # real held-out digits: what the fit was calibrated for
    with torch.no_grad():
        want = teacher(x).softmax(-1)
        err_fit = (model(x).softmax(-1) - want).abs().mean()
        err_naive = (naive(x).softmax(-1) - want).abs().mean()
    assert err_fit < 0.5 * err_naive
    # nothing overwritten without being asked
    with pytest.raises(SystemExit, match="already holds files"):
        main(["convert", "vit_nano_ln.digits", "--calib", RECIPE, "--batches", "1", "--out", str(out)])


def test_convert_names_bad_input(tmp_path):
    out = str(tmp_path / "x")
    with pytest.raises(SystemExit, match=r"unknown norm site\(s\) \['attention'\]"):
        main(["convert", "vit_nano_ln.digits", "--calib", RECIPE, "--exclude", "attention", "--out", out])
    with pytest.raises(SystemExit, match="no recipe at"):
        main(["convert", "vit_nano_ln.digits", "--calib", "missing.yaml", "--out", out])
    with pytest.raises(SystemExit, match="no point-wise norm"):
        main(["convert", "vit_nano_ln.digits", "--to", "rmsnorm", "--calib", RECIPE, "--out", out])
    with pytest.raises(SystemExit, match="batches must be an integer >= 1"):
        main(["convert", "vit_nano_ln.digits", "--calib", RECIPE, "--batches", "0", "--out", out])
