"""Save, load, push and pretrained=True through the real huggingface_hub code paths, offline."""

import json
import time
import warnings

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

import derf_zoo
from derf_zoo.hub import (
    NoPretrainedWeightsError,
    ReleasedWeights,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsNotAvailableError,
    load_manifest,
    push_to_hub,
    sha256_file,
)
from derf_zoo.hub import manifest as manifest_module
from derf_zoo.models import from_pretrained

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # what tests/hub/conftest.py seeds
X = torch.randn(2, 1, 16, 16)
REPO = "derf-zoo/vit_nano_derf.digits"


def _released(tiny_folder_path, **kw):
    fields = {"name": "vit_nano_derf.digits", "repo_id": REPO, "revision": FAKE_COMMIT,
              "sha256": sha256_file(tiny_folder_path / "model.safetensors"), "dataset": "digits",
              "produced_by": "test", "license": "apache-2.0",
              "model_args": {"embed_dim": 32, "depth": 2, "num_heads": 2}}  # fmt: skip
    return ReleasedWeights(**{**fields, **kw})


def test_folder_round_trip_config_and_card(tiny_folder):
    model, folder = tiny_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "vit_nano_derf" and config["model_args"]["norm"] == "derf"
    assert config["pretrained_cfg"]["input_size"] == [1, 16, 16] and config["library_name"] == "derf_zoo"
    loaded = from_pretrained(folder)
    torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "derf_zoo" and card.data.license == "apache-2.0"
    assert card.data.eval_results[0].metric_value == 12.5 and card.data.eval_results[0].dataset_split == "val"


def test_from_pretrained_through_a_seeded_hub_cache(hub_cache, seed, tiny_folder):
    model, folder = tiny_folder
    seed(hub_cache, REPO, folder)
    torch.testing.assert_close(derf_zoo.from_pretrained(REPO)(X), model(X), rtol=0, atol=0)
    torch.testing.assert_close(derf_zoo.from_pretrained(REPO, revision=FAKE_COMMIT)(X), model(X), rtol=0, atol=0)
    with pytest.raises(WeightsNotAvailableError, match="not in the Hub cache"):
        derf_zoo.from_pretrained(REPO, revision="f" * 40)


def test_timm_hf_hub_prefix_loads_the_same_folder(hub_cache, seed, tiny_folder):
    model, folder = tiny_folder
    seed(hub_cache, REPO, folder)
    via_timm = timm.create_model(f"hf-hub:{REPO}", pretrained=True).eval()
    torch.testing.assert_close(via_timm(X), model(X), rtol=0, atol=0)


def test_pretrained_true_resolves_the_manifest_and_checks_sha256(hub_cache, seed, tiny_folder, monkeypatch):
    model, folder = tiny_folder
    seed(hub_cache, REPO, folder)
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (_released(folder),))
    loaded = derf_zoo.create_model("vit_nano_derf.digits", pretrained=True)
    torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)
    assert loaded.pretrained_cfg["tag"] == "digits" and not loaded.training
    assert torch.equal(derf_zoo.vit_nano_derf(pretrained=True)(X), loaded(X))  # default tag
    with pytest.raises(NoPretrainedWeightsError, match=r"released for vit_nano_derf: vit_nano_derf\.digits"):
        derf_zoo.create_model("vit_nano_derf.in1k", pretrained=True)

    monkeypatch.setattr(manifest_module, "released_weights", lambda: (_released(folder, sha256="0" * 64),))
    with pytest.raises(WeightsIntegrityError, match="manifest pins 0000"):
        derf_zoo.create_model("vit_nano_derf.digits", pretrained=True)


def test_corrupted_file_and_missing_key_leave_the_model_untouched(tiny_folder, tmp_path):
    model, folder = tiny_folder
    target = derf_zoo.vit_nano_derf(embed_dim=32, depth=2, num_heads=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    corrupted = tmp_path / "corrupted"
    corrupted.mkdir()
    for f in folder.iterdir():
        (corrupted / f.name).write_bytes(f.read_bytes())
    data = (corrupted / "model.safetensors").read_bytes()
    (corrupted / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsIntegrityError, match="changed or corrupted after they were saved"):
        from_pretrained(corrupted)  # the sha256 save_pretrained recorded in config.json
    config = json.loads((corrupted / "config.json").read_text())
    del config["weights_sha256"]  # a folder from before the record: the reader still refuses a truncated file
    (corrupted / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsMismatchError, match="corrupted or truncated"):
        from_pretrained(corrupted)

    state = dict(model.state_dict())
    del state["backbone.blocks.1.norm2.alpha"]
    state["extra.weight"] = torch.ones(1)
    from derf_zoo.hub import load_into

    with pytest.raises(WeightsMismatchError) as err:
        load_into(target, state, source="test")
    assert "missing keys: backbone.blocks.1.norm2.alpha" in str(err.value)
    assert "unexpected keys: extra.weight" in str(err.value) and "nothing was loaded" in str(err.value)
    for k, v in target.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_other_num_classes_reinitialises_the_head_with_a_warning(tiny_folder):
    model, folder = tiny_folder
    with pytest.warns(UserWarning, match="classifier has 10 classes in the weights and 3 in the model"):
        loaded = from_pretrained(folder, num_classes=3)
    assert loaded.head.out_features == 3
    torch.testing.assert_close(
        loaded.forward_head(loaded.forward_features(X), pre_logits=True),
        model.forward_head(model.forward_features(X), pre_logits=True),
    )


def test_missing_file_offline_fails_within_a_second(hub_cache):
    start = time.perf_counter()
    with pytest.raises(WeightsNotAvailableError) as err:
        derf_zoo.from_pretrained("derf-zoo/not-cached")
    assert time.perf_counter() - start < 1.0
    assert str(hub_cache) in str(err.value) and "derf-zoo download" in str(err.value)


def test_pickle_only_repos_are_refused(hub_cache, seed, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_nano_derf", "model_args": {}}))
    torch.save({"head.weight": torch.ones(1)}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsIntegrityError, match="only pickle weights"):
        from_pretrained(folder)
    seed(hub_cache, "someone/pickled", folder)
    with pytest.raises(WeightsIntegrityError, match="only pickle weights"):
        from_pretrained("someone/pickled")


def test_push_dry_run_and_the_real_api_wiring(tiny_folder, monkeypatch):
    _, folder = tiny_folder
    out = push_to_hub(folder, "me/vit", dry_run=True)
    from pathlib import Path

    assert sorted(p.name for p in Path(out).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create_repo", repo_id, private))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], sorted(kw["allow_patterns"])))
            return type("Info", (), {"oid": "c" * 40})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert push_to_hub(folder, "me/vit", private=True) == "c" * 40
    assert calls[1] == ("create_repo", "me/vit", True)
    assert calls[2] == ("upload_folder", "me/vit", ["README.md", "config.json", "model.safetensors"])
    with pytest.raises(FileNotFoundError, match="not a Hub folder"):
        push_to_hub(folder / "nowhere", "me/vit")


def test_model_not_built_through_the_registry_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not built through derf_zoo's registry"):
        derf_zoo.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2).save_pretrained(
            tmp_path
        )


def test_alpha_auto_is_saved_as_a_plain_spec(tmp_path):
    model = derf_zoo.vit_nano_derf(norm="derf(alpha=auto, shift=0.1)", embed_dim=32, depth=1, num_heads=2)
    config = json.loads((model.save_pretrained(tmp_path / "out") / "config.json").read_text())
    assert config["model_args"]["norm"] == "derf(shift_init=0.1)"


def test_manifest_validation(tmp_path):
    bad = tmp_path / "manifest.yaml"
    bad.write_text(
        "weights:\n  - name: vit_nano_derf.x\n    dataset: d\n    produced_by: p\n    license: l\n"
        "    repo_id: a/b\n    colour: red\n"
    )
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        load_manifest(bad)
    bad.write_text("weights:\n  - name: vit_nano_derf.x\n    dataset: d\n    produced_by: p\n    license: l\n")
    with pytest.raises(ValueError, match="neither an embedded folder nor a repo_id"):
        load_manifest(bad)


def test_timm_format_weights_map_onto_the_zoo(hub_cache, seed, tmp_path, monkeypatch):
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=10).eval()
    folder = tmp_path / "timm"
    folder.mkdir()
    save_file(reference.state_dict(), folder / "model.safetensors")
    seed(hub_cache, "timm/vit_tiny_patch16_224.test", folder)
    entry = ReleasedWeights(name="vit_tiny_ln.test", repo_id="timm/vit_tiny_patch16_224.test", revision=None,
                            sha256=sha256_file(folder / "model.safetensors"), source_format="timm",
                            dataset="imagenet-1k", produced_by="test", license="apache-2.0",
                            model_args={"global_pool": "token", "num_classes": 10})  # fmt: skip
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (entry,))
    ours = derf_zoo.vit_tiny_ln(pretrained=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
