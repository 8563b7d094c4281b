"""``derf-zoo sample`` end to end on a tiny random DiT (a Hub folder and a Diffusion checkpoint), and bad inputs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derf_zoo import create_model
from derf_zoo.cli import main
from derf_zoo.diffusion.sampling import draw, load_dit
from tests.tasks._tiny_diffusion import TINY_DIT, one_step_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("dit_nano_derf", **TINY_DIT)
    return model.save_pretrained(tmp_path_factory.mktemp("hub") / "tiny_dit")


def test_sample_from_hub_folder_writes_grid_and_npz(folder, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = [str(folder), "--out", str(out), "--classes", "0", "2", "--per-class", "3", "--steps", "4", "--seed", "1"]
    assert main(["sample", *args]) == 0
    assert "6 samples" in capsys.readouterr().out
    data = np.load(out.with_suffix(".npz"))
    assert data["arr_0"].shape == (6, 4, 4, 3) and data["arr_0"].dtype == np.uint8
    assert data["arr_1"].tolist() == [0, 0, 0, 2, 2, 2]
    picture = np.asarray(Image.open(out))
    assert picture.shape == (2 * 34, 3 * 34, 3)  # 2 classes (rows) x 3 samples; 4 px enlarged x8, 1-px border
    # the same seed draws the same samples; an existing file is refused without --overwrite
    with pytest.raises(SystemExit, match="already exists"):
        main(["sample", *args])
    first = data["arr_0"].copy()
    assert main(["sample", *args, "--overwrite"]) == 0
    assert np.array_equal(np.load(out.with_suffix(".npz"))["arr_0"], first)


def test_ddim_and_guidance_default_every_class(folder, tmp_path):
    out = tmp_path / "g.png"
    assert main(["sample", str(folder), "--out", str(out), "--sampler", "ddim", "--steps", "5", "--per-class", "1",
                 "--cfg-scale", "2.5"]) == 0  # fmt: skip
    assert np.load(out.with_suffix(".npz"))["arr_1"].tolist() == [0, 1, 2]


def test_draw_is_deterministic_and_batched(folder):
    model = load_dit(str(folder))
    y = torch.tensor([0, 1, 2, 0])
    a = draw(model, y, steps=3, seed=5, batch_size=4)
    assert a.shape == (4, 1, 4, 4) and a.dtype == torch.uint8
    assert torch.equal(a, draw(model, y, steps=3, seed=5, batch_size=4))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sample_from_diffusion_checkpoint(tmp_path):
    task, ckpt = one_step_checkpoint(tmp_path / "last.ckpt")
    model = load_dit(str(ckpt))
    for k, v in task.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    out = tmp_path / "s.png"
    assert main(["sample", str(ckpt), "--out", str(out), "--per-class", "1", "--steps", "2"]) == 0
    assert out.is_file()
    tampered = torch.load(ckpt, weights_only=True)
    next(iter(tampered["state_dict"].values())).add_(1.0)
    torch.save(tampered, tmp_path / "tampered.ckpt")
    with pytest.raises(SystemExit, match=r"tampered\.ckpt is corrupted"):  # one line, not a traceback
        main(["sample", str(tmp_path / "tampered.ckpt"), "--out", str(tmp_path / "t.png"), "--steps", "2"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cfg-scale", "0.5"], "cfg-scale must be a finite number >= 1"),
        (["--cfg-scale", "inf"], r"cfg-scale must be a finite number >= 1 .*got inf"),
        (["--cfg-scale", "nan"], "cfg-scale must be a finite number >= 1"),
        (["--sampler", "euler"], "Unknown sampler 'euler'.*ddim, ddpm"),
        (["--classes", "0", "3"], r"Class label\(s\) \[3\] out of range.*0..2"),
        (["--classes", "-1"], "out of range"),
        (["--steps", "0"], r"steps must be an integer in \[1, 1000\] \(the training process has 1000\), got 0"),
        (["--per-class", "0"], "--per-class must be an integer >= 1, got 0"),
    ],
)
def test_bad_options(folder, tmp_path, extra, message):
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit, match=message):
        main(["sample", str(folder), "--out", str(out), "--steps", "2", *extra])
    assert not out.exists()


def test_bad_sources(tmp_path):
    with pytest.raises(SystemExit, match="neither a checkpoint file, a Hub folder, nor a released weight"):
        main(["sample", "no_such_model", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="no such checkpoint file or Hub folder"):
        main(["sample", str(tmp_path / "missing" / "last.ckpt"), "--out", str(tmp_path / "x.png")])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="Cannot read"):
        main(["sample", str(junk), "--out", str(tmp_path / "x.png")])


def test_released_weight_that_is_not_a_dit(tmp_path):
    with pytest.raises(SystemExit, match="is not a class-conditional DiT"):
        main(["sample", "vit_nano_ln.digits", "--out", str(tmp_path / "x.png")])


def test_outputs_are_checked_before_sampling(folder, tmp_path, monkeypatch):
    import derf_zoo.commands.sample as sample_command

    def never(*args, **kwargs):
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr(sample_command, "draw", never)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(a_file / "sub" / "x.png", r"a_file is a file, not a folder"),
             (tmp_path / "dir.png", r"dir.png is a folder"),
             (Path("/proc/derf_zoo_test/x.png"), r"cannot write into /proc")]  # unwritable even for root
    (tmp_path / "dir.png").mkdir()
    for out, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(["sample", str(folder), "--out", str(out), "--steps", "2", "--overwrite"])


def test_a_missing_gpu_or_unknown_device_is_a_one_line_error(folder, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match=r"--device cuda: no CUDA GPU is available"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        main(["sample", str(folder), "--out", str(tmp_path / "x.png"), "--device", "cuda"])
    with pytest.raises(SystemExit, match=r"--device 'tpu9' is not a device torch knows"):
        main(["sample", str(folder), "--out", str(tmp_path / "x.png"), "--device", "tpu9"])
