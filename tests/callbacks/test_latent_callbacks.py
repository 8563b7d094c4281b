"""SampleGrid and FID on a latent DiT: samples decoded by the VAE; FID against ADM-style reference statistics."""

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from derf_zoo.callbacks import FID, SampleGrid
from derf_zoo.diffusion import feature_statistics, frechet_distance
from derf_zoo.diffusion.sampling import draw
from derf_zoo.tasks import Diffusion

#: A DiT-B/4 + Derf entry point (latent space, 4 channels) shrunk to 2x2 patches of a 4x4 latent.
TINY_LATENT = {"hidden_size": 16, "depth": 1, "num_heads": 2, "num_classes": 3, "input_size": 4, "patch_size": 2}


def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, latent_channels=4,
                         layers_per_block=1, sample_size=32)  # fmt: skip


class MeanColour(torch.nn.Module):
    """Per-channel mean of uint8 RGB images: a 3-d feature space."""

    num_features = 3

    def forward(self, images):
        return images.float().mean((2, 3))


def fit(tmp_path, callbacks):
    torch.manual_seed(0)
    task = Diffusion("dit_b_4_derf", model_args=TINY_LATENT)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                        callbacks=callbacks)  # fmt: skip
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    return task


def test_latent_grid_and_fid_decode_through_the_vae(tmp_path):
    vae = tiny_vae()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    mu, sigma = rng.normal(size=3) * 10 + 128, a @ a.T + np.eye(3)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma)
    grid = SampleGrid(per_class=2, steps=2, vae=vae)
    fid = FID(MeanColour(), num_samples=6, batch_size=4, every_n_epochs=1, steps=2, vae=vae,
              reference_stats=str(tmp_path / "ref.npz"))  # fmt: skip
    task = fit(tmp_path, [grid, fid])
    # 3 classes x 2, each 4x4 latent decoded to 32x32 px, plus a 1-px border
    assert np.asarray(Image.open(grid.last_path)).shape == (3 * 34, 2 * 34, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    fake = torch.cat([draw(task.model, y, sampler="ddim", steps=2, seed=i, batch_size=len(y), vae=vae)
                      for i, y in enumerate(labels.split(4))])  # fmt: skip
    expected = frechet_distance(mu, sigma, *feature_statistics(MeanColour()(fake).double()))
    assert fid.last_value == pytest.approx(expected, rel=1e-6)


def test_latent_dit_needs_a_vae_and_stats_must_exist(tmp_path):
    with pytest.raises(ValueError, match=r"SampleGrid: the model is a latent DiT.*vae=stabilityai/sd-vae-ft-ema"):
        fit(tmp_path, [SampleGrid(steps=2)])
    with pytest.raises(FileNotFoundError, match=r"reference_stats .*missing\.npz does not exist"):
        fit(tmp_path, [FID(MeanColour(), num_samples=4, vae=tiny_vae(), reference_stats=str(tmp_path / "missing.npz"))])


def test_a_vae_given_by_name_loads_through_the_shared_loader(tmp_path, monkeypatch):
    """A folder string loads in eval mode; a missing folder or an uncached Hub id offline fail with the loader's
    FileNotFoundError (how to provide the VAE), as in ``derf-zoo sample``."""
    from derf_zoo.callbacks._sampling import resolve_vae
    from derf_zoo.models import create_model

    network = create_model("dit_b_4_derf", **TINY_LATENT)
    tiny_vae().save_pretrained(tmp_path / "vae")
    vae = resolve_vae("FID", network, str(tmp_path / "vae"), torch.device("cpu"))
    assert not vae.training and vae.config.latent_channels == 4
    with pytest.raises(FileNotFoundError, match=r"VAE folder .*missing_vae does not exist.*vae argument"):
        resolve_vae("FID", network, str(tmp_path / "missing_vae"), torch.device("cpu"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(FileNotFoundError, match=r"'stabilityai/sd-vae-ft-ema'.*huggingface-cli download"):
        resolve_vae("FID", network, "stabilityai/sd-vae-ft-ema", torch.device("cpu"))
