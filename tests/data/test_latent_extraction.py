"""Latent extraction (derf_zoo.data.latent_extraction) and `derf-zoo extract-latents` on a tiny random AutoencoderKL
(saved to a tmp folder: no download) and a few PNGs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from derf_zoo.cli import main
from derf_zoo.data import latent_extraction as xl
from derf_zoo.data.latents import SD_VAE_SCALE, LatentDataModule

SIZE = 16  # pixels: 2x2x4 latents


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, latent_channels=4,
                        layers_per_block=1, sample_size=SIZE)  # fmt: skip
    folder = tmp_path_factory.mktemp("vae") / "tiny_vae"
    vae.save_pretrained(folder)
    return folder


@pytest.fixture
def images(tmp_path):
    """3 classes x 3 images of varied sizes (non-square, larger than SIZE: exercises crop and resize)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c, name in enumerate(("b_dog", "a_cat", "c_fox")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            h, w = 20 + 7 * i, 40 + 3 * c
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "a_cat" / "notes.txt").write_text("not an image")
    return root


def _expected(vae_folder, images, mode, seed):
    """Latents computed directly, one image at a time: the crop, diffusers' posterior ``latent_dist.sample`` with
    the image's generator (or ``.mean``), times 0.18215."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    _, items = xl.list_images(images)
    out = []
    for i, (path, _) in enumerate(items):
        x = torch.from_numpy(xl.center_crop_arr(Image.open(path).convert("RGB"), SIZE).copy())
        x = (x.permute(2, 0, 1).float() / 127.5 - 1)[None]
        with torch.no_grad():
            dist = vae.encode(x).latent_dist
            latent = dist.sample(generator=torch.Generator().manual_seed((seed << 32) + i)) if mode == "sample" \
                else dist.mean
        out.append(latent * SD_VAE_SCALE)
    return torch.cat(out)


def test_center_crop_matches_adm():
    """A 100x50 image at 16: halved twice by BOX (short side 50 -> 25 >= 32? no: once to 50x25), bicubic to 32x16,
    then the middle 16 columns."""
    arr = np.arange(50 * 100 * 3, dtype=np.uint32).reshape(50, 100, 3) % 251
    image = Image.fromarray(arr.astype(np.uint8))
    half = image.resize((50, 25), resample=Image.BOX)
    resized = np.asarray(half.resize((32, 16), resample=Image.BICUBIC))
    assert np.array_equal(xl.center_crop_arr(image, 16), resized[:, 8:24])


@pytest.mark.parametrize("mode", ["sample", "mean"])
def test_shards_load_through_the_datamodule_with_the_vae_values(vae_folder, images, tmp_path, mode):
    out = tmp_path / "latents"
    done = xl.extract_latents(images, out, vae=str(vae_folder), image_size=SIZE, shard_size=4, batch_size=3,
                              mode=mode, seed=5, progress=False)  # fmt: skip
    assert done == {"shards": 3, "written": 3, "skipped": 0, "images": 9, "invalid": []}
    assert sorted(p.name for p in out.glob("*.safetensors")) == [f"shard_0000{i}.safetensors" for i in range(3)]
    record = json.loads((out / xl.RECORD_NAME).read_text())
    assert record["classes"] == ["a_cat", "b_dog", "c_fox"] and record["mode"] == mode
    data = LatentDataModule(str(out), flip=False, num_classes=3, batch_size=9, num_workers=0)
    data.setup("fit")
    latents, labels = next(iter(data.train_dataloader()))
    assert latents.shape == (9, 4, SIZE // 8, SIZE // 8) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    stored = data.train_set
    assert stored.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # sorted class folders, as ImageFolder
    expected = _expected(vae_folder, images, mode, seed=5)
    torch.testing.assert_close(stored.latents, expected, rtol=1e-5, atol=1e-6)


def test_flip_stores_the_latents_of_flipped_images(vae_folder, images, tmp_path):
    out = tmp_path / "latents"
    xl.extract_latents(images, out, vae=str(vae_folder), image_size=SIZE, shard_size=16, mode="mean", flip=True,
                       dtype="float16", progress=False)  # fmt: skip
    shard = load_file(out / "shard_00000.safetensors")
    assert shard["latents"].dtype == torch.float16 and shard["latents_flipped"].shape == shard["latents"].shape
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    _, items = xl.list_images(images)
    x = torch.from_numpy(xl.center_crop_arr(Image.open(items[0][0]).convert("RGB"), SIZE).copy())
    x = (x.permute(2, 0, 1).float() / 127.5 - 1)[None].flip(-1)
    with torch.no_grad():
        want = vae.encode(x).latent_dist.mean * SD_VAE_SCALE
    torch.testing.assert_close(shard["latents_flipped"][:1].float(), want, rtol=2e-3, atol=2e-3)
    assert not torch.equal(shard["latents_flipped"], shard["latents"])
    data = LatentDataModule(str(out), flip=True, num_classes=3, num_workers=0)
    data.setup("fit")
    assert data.train_set.flipped is not None

    unflipped = tmp_path / "unflipped"
    xl.extract_latents(images, unflipped, vae=str(vae_folder), image_size=SIZE, shard_size=16, mode="mean",
                       progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"flip=True needs latents_flipped in every shard.*shard_00000.*--flip"):
        LatentDataModule(str(unflipped), flip=True, num_classes=3).setup("fit")  # it would train without the flip


def test_resume_skips_complete_shards_and_redoes_a_broken_one(vae_folder, images, tmp_path, monkeypatch):
    out = tmp_path / "latents"
    kwargs = dict(vae=str(vae_folder), image_size=SIZE, shard_size=4, seed=1, progress=False)
    real_write = xl._write_shard
    calls = []

    def interrupted(path, tensors, digest, skipped=None):  # the second shard's write dies after leaving a partial file
        calls.append(path.name)
        if len(calls) == 2:
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(b"half a shard")
            raise KeyboardInterrupt
        real_write(path, tensors, digest, skipped)

    monkeypatch.setattr(xl, "_write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        xl.extract_latents(images, out, **kwargs)
    assert [p.name for p in out.glob("*.safetensors")] == ["shard_00000.safetensors"]  # no bad shard visible
    # an interrupted extraction is refused by name (its shards are whole classes), unless asked for
    with pytest.raises(ValueError, match=r"incomplete extraction: extract_latents.json records 9 images in 3 shards, "
                                         r"but 2 shard\(s\) are missing \(shard_00001.safetensors, shard_00002"):
        LatentDataModule(str(out), flip=False, num_classes=3).setup("fit")
    with pytest.warns(UserWarning, match="Training on the 1 shard"):
        partial = LatentDataModule(str(out), flip=False, num_classes=3, allow_incomplete=True)
        partial.setup("fit")
    assert len(partial.train_set) == 4
    first = (out / "shard_00000.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(xl, "_write_shard", real_write)
    resumed = xl.extract_latents(images, out, **kwargs)
    assert resumed == {"shards": 3, "written": 2, "skipped": 1, "images": 9, "invalid": []}
    assert (out / "shard_00000.safetensors").stat().st_mtime_ns == first  # kept, not rewritten
    assert not list(out.glob(".*.partial"))
    # the resumed folder equals an uninterrupted extraction
    fresh = tmp_path / "fresh"
    xl.extract_latents(images, fresh, **kwargs)
    for i in range(3):
        a, b = load_file(out / f"shard_0000{i}.safetensors"), load_file(fresh / f"shard_0000{i}.safetensors")
        assert torch.equal(a["latents"], b["latents"]) and torch.equal(a["labels"], b["labels"])
    # a truncated shard (a crash outside our write, a bad copy) is detected and redone
    (out / "shard_00001.safetensors").write_bytes((out / "shard_00001.safetensors").read_bytes()[:50])
    assert xl.extract_latents(images, out, **kwargs)["written"] == 1
    assert torch.equal(load_file(out / "shard_00001.safetensors")["latents"],
                       load_file(fresh / "shard_00001.safetensors")["latents"])  # fmt: skip


def test_cli_refuses_another_extraction_without_overwrite(vae_folder, images, tmp_path, capsys):
    out = tmp_path / "latents"
    args = ["extract-latents", str(images), "--out", str(out), "--vae", str(vae_folder), "--image-size", str(SIZE),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "3 written" not in capsys.readouterr().out  # one shard of 9 images (default shard size)
    assert main(args) == 0
    assert "0 written, 1 already complete" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"another extraction.*--overwrite"):
        main([*args, "--mode", "mean"])
    assert main([*args, "--mode", "mean", "--overwrite"]) == 0
    assert json.loads((out / xl.RECORD_NAME).read_text())["mode"] == "mean"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="other files"):
        main([*args[:3], str(other), *args[4:]])
    assert (other / "keep.txt").read_text() == "mine"


def test_overwrite_never_removes_a_folder_that_is_not_an_extraction(vae_folder, images, tmp_path):
    """--overwrite on a folder without the record (say ~/data) refuses and deletes nothing."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"data holds other files and no extract_latents.json.*not removed"):
        xl.extract_latents(images, data, vae=str(vae_folder), image_size=SIZE, overwrite=True, progress=False)
    assert (data / "sub" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in data.iterdir()) == ["sub"]


def test_overwrite_deletes_only_the_shards_and_the_record(vae_folder, images, tmp_path):
    out = tmp_path / "latents"
    kwargs = dict(vae=str(vae_folder), image_size=SIZE, shard_size=4, progress=False)
    assert xl.extract_latents(images, out, **kwargs)["shards"] == 3
    (out / "README.txt").write_text("notes")
    (out / "sub").mkdir()
    assert xl.extract_latents(images, out, **{**kwargs, "shard_size": 9}, overwrite=True)["written"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", xl.RECORD_NAME, "shard_00000.safetensors", "sub"]
    assert json.loads((out / xl.RECORD_NAME).read_text())["shard_size"] == 9


@pytest.mark.parametrize("where", ["equal", "parent"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_may_not_be_or_contain_the_image_folder(vae_folder, images, where, overwrite):
    out = images if where == "equal" else images.parent
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match=rf"The output folder {out} is or contains the image folder {images}"):
        xl.extract_latents(images, out, vae=str(vae_folder), image_size=SIZE, overwrite=overwrite, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_bad_inputs_name_the_value(vae_folder, images, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no_such_dir does not exist"):
        xl.extract_latents(tmp_path / "no_such_dir", out, vae=str(vae_folder), progress=False)
    (tmp_path / "empty" / "a_class").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty has no class folders with images"):
        xl.extract_latents(tmp_path / "empty", out, vae=str(vae_folder), progress=False)
    with pytest.raises(FileNotFoundError, match=r"VAE folder .*missing_vae does not exist"):
        xl.extract_latents(images, out, vae=str(tmp_path / "missing_vae"), progress=False)
    with pytest.raises(ValueError, match=r"divisible by 8.*got 100"):
        xl.extract_latents(images, out, vae=str(vae_folder), image_size=100, progress=False)
    with pytest.raises(ValueError, match=r"mode.*'median'.*sample"):
        xl.extract_latents(images, out, vae=str(vae_folder), mode="median", progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(FileNotFoundError, match=r"'stabilityai/sd-vae-ft-ema'.*huggingface-cli download.*--vae"):
        xl.load_vae("stabilityai/sd-vae-ft-ema")
    with pytest.raises(SystemExit, match=r"divisible by 8 .*got 20"):
        main(["extract-latents", str(images), "--out", out, "--vae", str(vae_folder), "--image-size", "20"])
    assert not (tmp_path / "out").exists()  # nothing written by a refused call


def test_the_reader_refuses_shards_it_cannot_use(tmp_path):
    from safetensors.torch import save_file

    from derf_zoo.data.latents import LatentShards

    save_file({"latents": torch.zeros(2, 4, 4, 4), "labels": torch.zeros(2, dtype=torch.long)},
              tmp_path / "a.safetensors")  # fmt: skip
    save_file({"latents": torch.zeros(2, 4, 2, 2), "labels": torch.zeros(2, dtype=torch.long)},
              tmp_path / "b.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match=r"b\.safetensors holds latents of shape \(4, 2, 2\), a\.safetensors"):
        LatentShards(tmp_path)
    (tmp_path / "b.safetensors").unlink()
    save_file({"latents": torch.zeros(2, 4, 4, 4), "labels": torch.zeros(2, dtype=torch.long),
               "latents_flipped": torch.zeros(2, 4, 2, 2)}, tmp_path / "c.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match=r"latents_flipped \(2, 4, 2, 2\) differs"):
        LatentShards(tmp_path)


def test_unreadable_images_are_named_or_skipped_and_listed(vae_folder, images, tmp_path, capsys, monkeypatch):
    whole = (images / "a_cat" / "1.png").read_bytes()
    (images / "a_cat" / "1.png").write_bytes(whole[: len(whole) // 2])  # truncated: PIL names no file
    (images / "c_fox" / "0.png").write_text("not an image")
    out = tmp_path / "latents"
    kwargs = dict(vae=str(vae_folder), image_size=SIZE, shard_size=4, progress=False)
    with pytest.raises(ValueError, match=r"image .*a_cat/1\.png cannot be read .*skip_invalid=True"):
        xl.extract_latents(images, out, **kwargs)
    assert not (out / xl.RECORD_NAME).exists()  # the first shard failed: no record of an extraction that is not there
    done = xl.extract_latents(images, out, **kwargs, skip_invalid=True)
    assert done["invalid"] == ["a_cat/1.png", "c_fox/0.png"] and done["written"] == 3
    data = LatentDataModule(str(out), flip=False, num_classes=3, num_workers=0)
    data.setup("fit")
    assert data.train_set.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert xl.extract_latents(images, out, **kwargs, skip_invalid=True)["skipped"] == 3  # whole: nothing redone
    args = ["extract-latents", str(images), "--out", str(tmp_path / "cli"), "--vae", str(vae_folder), "--image-size",
            str(SIZE), "--no-progress", "--skip-invalid"]  # fmt: skip
    assert main(args) == 0
    assert "left out 2 image(s) that cannot be read (--skip-invalid):\n  a_cat/1.png\n  c_fox/0.png" in (
        capsys.readouterr().out)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"--device cuda: no CUDA GPU"):  # before loading the VAE
        main([*args[:3], str(tmp_path / "gpu"), *args[4:], "--device", "cuda"])


def test_a_folder_that_cannot_be_listed_is_named(images, monkeypatch):
    from pathlib import Path

    real = Path.iterdir

    def iterdir(self):  # what a folder without read permission does (root, running the tests, can read anything)
        if self.name == "b_dog":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(FileNotFoundError, match=r"Cannot list the folder .*b_dog \(Permission denied\)"):
        xl.list_images(images)
