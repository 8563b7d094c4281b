"""pretrained=True from a local file: timm's ``pretrained_cfg_overlay={"file": ...}``, what a fine-tuning recipe uses
to start from weights that are not released (a converted ViT-B exported with ``derf-zoo export``)."""

import pytest
import torch

from derf_zoo.models import create_model

X = torch.randn(2, 1, 16, 16)
ARGS = {"embed_dim": 32, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize("which", ["folder", "file"])
def test_a_local_folder_or_file_loads_strictly(tiny_folder, which):
    model, folder = tiny_folder
    path = folder if which == "folder" else folder / "model.safetensors"
    loaded = create_model("vit_nano_derf", pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **ARGS)
    torch.testing.assert_close(loaded(X), model(X))
    assert "file" not in loaded.pretrained_cfg  # a local path is never recorded in the model's config


def test_a_new_num_classes_reinitialises_the_head_with_a_warning(tiny_folder):
    model, folder = tiny_folder
    with pytest.warns(UserWarning, match="classifier has 10 classes in the weights and 3 in the model"):
        loaded = create_model("vit_nano_derf", pretrained=True, num_classes=3, pretrained_cfg_overlay={"file": folder},
                              **ARGS)  # fmt: skip
    assert loaded.head.out_features == 3
    torch.testing.assert_close(loaded.forward_head(loaded.forward_features(X), pre_logits=True),
                               model.forward_head(model.forward_features(X), pre_logits=True))  # fmt: skip


def test_another_architecture_is_refused(tiny_folder):
    _, folder = tiny_folder
    with pytest.raises(Exception, match="does not fit VisionTransformer; nothing was loaded"):
        create_model("vit_nano_derf", pretrained=True, pretrained_cfg_overlay={"file": folder})  # default depth/width


def test_a_pickle_or_a_missing_path_is_refused(tmp_path):
    pickled = tmp_path / "weights.pth"
    torch.save({}, pickled)
    for path in (pickled, tmp_path / "absent.safetensors", tmp_path):
        with pytest.raises(FileNotFoundError, match=r"pickled weights .* are never loaded"):
            create_model("vit_nano_derf", pretrained=True, pretrained_cfg_overlay={"file": str(path)})


def test_without_pretrained_the_file_is_ignored_as_timm_does(tmp_path):
    model = create_model("vit_nano_derf", pretrained=False, pretrained_cfg_overlay={"file": str(tmp_path / "x")})
    assert model.pretrained_cfg["tag"] is None
