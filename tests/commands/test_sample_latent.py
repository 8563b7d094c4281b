"""``derf-zoo sample`` of a latent DiT (4 channels) decoded by a tiny random AutoencoderKL saved to a tmp folder
(no download): the decoded size and dtype, the parity of the decode with the VAE called directly, and the errors."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from derf_zoo import create_model
from derf_zoo.cli import main
from derf_zoo.data.latents import SD_VAE_SCALE
from derf_zoo.diffusion.sampling import decode_latents, draw, load_dit, sample_model_space

#: A DiT-B/4 + Derf entry point (latent space, 4 channels) shrunk to 2x2 patches of a 4x4 latent.
TINY_LATENT = {"hidden_size": 16, "depth": 1, "num_heads": 2, "num_classes": 3, "input_size": 4, "patch_size": 2}
ARCH = "dit_b_4_derf"


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, latent_channels=4,
                         layers_per_block=1, sample_size=32)  # fmt: skip


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vae") / "tiny_vae"
    tiny_vae().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def latent_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(ARCH, **TINY_LATENT)
    assert model.in_channels == 4 and model.pretrained_cfg["space"] == "latent"
    return model.save_pretrained(tmp_path_factory.mktemp("hub") / "tiny_latent_dit")


def reference_decode(vae, latents):
    """DiT's sample_ddp.py on the whole batch at once: decode(z / 0.18215), clamp(127.5 x + 128), uint8."""
    with torch.no_grad():
        x = vae.decode(latents / 0.18215).sample
    return torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8)


def test_decode_latents_matches_the_vae_called_directly_in_any_batching(vae_folder):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    torch.manual_seed(1)
    latents = torch.randn(5, 4, 4, 4) * SD_VAE_SCALE * 40  # wide enough that some pixels clamp at 0 and 255
    expected = reference_decode(vae, latents)
    assert expected.shape == (5, 3, 32, 32) and expected.dtype == torch.uint8
    assert expected.min() == 0 and expected.max() == 255  # the clamp is exercised
    for batch_size in (1, 2, 5, 64):
        got = decode_latents(vae, latents, batch_size)
        # exact against the VAE called on the same chunks; the batch size itself may move a float by an ulp
        chunked = torch.cat([reference_decode(vae, z) for z in latents.split(batch_size)])
        assert torch.equal(got, chunked)
        assert (got.int() - expected.int()).abs().max() <= 1
    with pytest.raises(ValueError, match=r"batch_size \(latents per decoder call\) must be >= 1"):
        decode_latents(vae, latents, 0)


def test_sample_latent_dit_writes_decoded_grid_and_npz(latent_folder, vae_folder, tmp_path, capsys):
    from diffusers import AutoencoderKL

    out = tmp_path / "grid.png"
    args = [str(latent_folder), "--out", str(out), "--classes", "0", "2", "--per-class", "2", "--steps", "3",
            "--seed", "4", "--vae", str(vae_folder), "--batch-size", "3", "--decode-batch-size", "2"]  # fmt: skip
    assert main(["sample", *args]) == 0
    assert "4 samples of 32x32 px" in capsys.readouterr().out
    data = np.load(out.with_suffix(".npz"))
    assert data["arr_0"].shape == (4, 32, 32, 3) and data["arr_0"].dtype == np.uint8  # latent 4 x 8 = 32 px
    assert data["arr_1"].tolist() == [0, 0, 2, 2]
    assert np.asarray(Image.open(out)).shape == (2 * 34, 2 * 34, 3)  # 2 classes x 2 samples, 1-px border
    # the same latents (same seeds, same sampling batches) decoded by the VAE directly give the same pixels
    model, vae = load_dit(str(latent_folder)), AutoencoderKL.from_pretrained(vae_folder).eval()
    labels = torch.tensor([0, 0, 2, 2])
    latents = torch.cat(list(sample_model_space(model, labels, steps=3, seed=4, batch_size=3)))
    assert latents.shape == (4, 4, 4, 4)
    # sampling batches [0:3] [3:4], each decoded 2 at a time: the decoder calls [0:2] [2:3] [3:4]
    chunks = (latents[0:2], latents[2:3], latents[3:4])
    expected = torch.cat([reference_decode(vae, z) for z in chunks]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(data["arr_0"], expected)
    assert data["arr_0"].std() > 0  # a real picture, not a constant


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sample_latent_dit_from_diffusion_checkpoint(vae_folder, tmp_path):
    """A Diffusion-task checkpoint of a latent DiT (trained one step on random latents) samples through --vae."""
    import lightning as L

    from derf_zoo.tasks.diffusion import Diffusion

    torch.manual_seed(0)
    task = Diffusion(ARCH, model_args=TINY_LATENT)
    data = torch.utils.data.TensorDataset(torch.randn(4, 4, 4, 4), torch.tensor([0, 1, 2, 0]))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "s.png"
    with pytest.raises(SystemExit, match=r"latent DiT.*vae argument \(`--vae` on the command line\) to "
                                         r"stabilityai/sd-vae-ft-ema"):
        main(["sample", str(ckpt), "--out", str(out), "--per-class", "1", "--steps", "2"])
    assert not out.exists()
    assert main(["sample", str(ckpt), "--out", str(out), "--per-class", "1", "--steps", "2",
                 "--vae", str(vae_folder)]) == 0  # fmt: skip
    data = np.load(out.with_suffix(".npz"))
    assert data["arr_0"].shape == (3, 32, 32, 3) and data["arr_1"].tolist() == [0, 1, 2]


def test_latent_dit_without_vae_names_the_option(latent_folder, tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit, match=r"latent DiT.*the vae argument \(`--vae` on the command line\)"):
        main(["sample", str(latent_folder), "--out", str(out), "--steps", "2"])
    assert not out.exists() and not out.with_suffix(".npz").exists()
    with pytest.raises(ValueError, match=r"the vae argument \(`--vae` on the command line\)"):
        draw(load_dit(str(latent_folder)), torch.tensor([0]), steps=2)


def test_missing_vae_folder_is_named(latent_folder, tmp_path):
    missing = tmp_path / "no_such_vae"
    with pytest.raises(SystemExit, match=f"VAE folder {re.escape(str(missing))} does not exist.*--vae"):
        main(["sample", str(latent_folder), "--out", str(tmp_path / "x.png"), "--steps", "2", "--vae", str(missing)])
    assert not (tmp_path / "x.png").exists()


def test_pixel_dit_refuses_a_vae(vae_folder, tmp_path):
    folder = create_model("dit_nano_derf", hidden_size=16, depth=1, num_heads=2, num_classes=3,
                          input_size=4).save_pretrained(tmp_path / "pixel")  # fmt: skip
    with pytest.raises(SystemExit, match=r"The vae argument \(`--vae` on the command line\) is for latent DiTs.*"
                                         r"pixel space \(1 channel.*drop the vae argument"):
        main(["sample", str(folder), "--out", str(tmp_path / "x.png"), "--steps", "2", "--vae", str(vae_folder)])


def test_vae_with_other_latent_channels_is_refused(latent_folder):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, latent_channels=8,
                        layers_per_block=1, sample_size=32)  # fmt: skip
    with pytest.raises(ValueError, match="VAE has 8 latent channels, the DiT 4"):
        draw(load_dit(str(latent_folder)), torch.tensor([0]), steps=2, vae=vae)


def test_bad_decode_batch_size(latent_folder, vae_folder, tmp_path):
    with pytest.raises(SystemExit, match="decode-batch-size must be >= 1, got 0"):
        main(["sample", str(latent_folder), "--out", str(tmp_path / "x.png"), "--steps", "2", "--vae",
              str(vae_folder), "--decode-batch-size", "0"])  # fmt: skip
