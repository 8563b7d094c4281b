"""SampleGrid: a PNG per due epoch from fixed noise, logged where the logger takes images, no side effects."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.loggers import CSVLogger, Logger
from PIL import Image

from derf_zoo.callbacks import SampleGrid
from derf_zoo.callbacks._sampling import sampling_network
from derf_zoo.diffusion.sampling import draw, grid_image

FAST = {"sampler": "ddim", "steps": 3, "per_class": 2}


def test_grid_png_has_one_row_per_class_and_is_the_seeded_draw(fit_dit, tmp_path):
    grid = SampleGrid(classes=[0, 3, 7], **FAST)
    task, _ = fit_dit([grid], logger=CSVLogger(tmp_path))
    path = grid.last_path
    assert path is not None and path == tmp_path / "lightning_logs" / "version_0" / "samples" / "epoch=000.png"
    picture = np.asarray(Image.open(path))
    # 8x8 digits enlarged x4 to 32 px plus a 1-px border: 34 px a cell, 3 rows x 2 columns, RGB
    assert picture.shape == (3 * 34, 2 * 34, 3)
    expected = draw(task.model, torch.tensor([0, 0, 3, 3, 7, 7]), sampler="ddim", steps=3, seed=0, batch_size=6)
    np.testing.assert_array_equal(picture, grid_image(expected, rows=3))


def test_training_rng_and_mode_are_untouched(fit_dit):
    # the same seeded run with and without grids after epoch 0 ends with identical weights: the grid drew no
    # numbers from the training RNG (epoch 1's noise and timesteps would differ otherwise)
    plain, _ = fit_dit([], epochs=2)
    grid = SampleGrid(**FAST)
    with_grid, _ = fit_dit([grid], epochs=2)
    assert grid.last_path is not None and grid.last_path.name == "epoch=001.png"
    for a, b in zip(plain.state_dict().values(), with_grid.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model = with_grid.model.train()
    before = torch.get_rng_state()
    SampleGrid(**FAST).images(model)
    assert torch.equal(torch.get_rng_state(), before) and model.training
    assert all(m.training for m in model.modules())


def test_existing_file_is_kept_and_fast_dev_run_draws_nothing(fit_dit, tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "epoch=000.png").write_bytes(b"keep")
    grid = SampleGrid(every_n_epochs=1, **FAST)
    fit_dit([grid])
    assert (folder / "epoch=000.png").read_bytes() == b"keep" and grid.last_path == folder / "epoch=000-v1.png"
    quiet = SampleGrid(**FAST)
    fit_dit([quiet], fast_dev_run=True)
    assert quiet.last_path is None


def test_ema_grid_is_drawn_from_the_average(fit_dit):
    grid = SampleGrid(classes=[2, 5], **FAST)
    ema = EMAWeightAveraging(decay=0.5)
    task, trainer = fit_dit([ema, grid])
    assert sampling_network(trainer, task, use_average=True) is not task.model
    # fit's end copies the average into the module: the grid drawn at the epoch's end is that network's draw
    # (the raw weights after 2 steps differ from a 0.5-decay average, so a grid of the raw weights would not be)
    expected = draw(task.model, torch.tensor([2, 2, 5, 5]), sampler="ddim", steps=3, seed=0, batch_size=4)
    np.testing.assert_array_equal(np.asarray(Image.open(grid.last_path)), grid_image(expected, rows=2))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sampler": "euler"}, r"euler.*ddim, ddpm"),
    ({"cfg_scale": 0.5}, r"cfg_scale must be a finite number >= 1.*0\.5"),
    ({"cfg_scale": float("inf")}, r"cfg_scale must be a finite number >= 1.*inf"),
    ({"every_n_epochs": 0}, r"every_n_epochs.*0"),
    ({"per_class": 0}, r"per_class.*0"),
    ({"steps": 0}, r"SampleGrid: steps must be an integer in \[1, 1000\] \(the training process has 1000\), got 0\."),
])  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SampleGrid(**kwargs)


def test_out_of_range_class_fails_at_setup(fit_dit):
    with pytest.raises(ValueError, match=r"\[12\] out of range.*0\.\.9"):
        fit_dit([SampleGrid(classes=[1, 12], **FAST)])


def test_pixel_model_refuses_a_vae(fit_dit):
    with pytest.raises(ValueError, match="drop vae"):
        fit_dit([SampleGrid(vae=torch.nn.Identity(), **FAST)])


class ImageLogger(Logger):
    """A logger with TensorBoard's image API (``experiment.add_image``), without TensorBoard."""

    name, version = "images", 0

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def experiment(self):
        return SimpleNamespace(add_image=lambda tag, img, step, dataformats: self.calls.append((tag, img.shape, step,
                                                                                               dataformats)))

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_grid_goes_to_a_logger_that_takes_images(fit_dit, tmp_path):
    logger = ImageLogger()
    fit_dit([SampleGrid(classes=[1], **FAST)], logger=logger)
    assert logger.calls == [("samples", (34, 2 * 34, 3), 2, "HWC")]  # one row of 2 cells, after 2 steps
