"""Nothing lost, nothing trusted blindly: overwrites, partial folders, stray files, hashes, edited configs,
wrong dtypes and heads (issue 9, items 3 and 9-11), and a Hub layer that knows no family."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import derf_zoo
from derf_zoo.hub import WeightsIntegrityError, WeightsMismatchError, load_into, push_to_hub, sha256_file
from derf_zoo.hub import manifest as manifest_module
from derf_zoo.hub.card import model_card
from derf_zoo.hub.download import verify_cached_file
from derf_zoo.hub.folder import HUB_FILES, save_pretrained
from derf_zoo.models import from_pretrained

HUB = Path(derf_zoo.__file__).parent / "hub"


def test_the_hub_layer_imports_no_family_task_or_data():
    for path in HUB.glob("*.py"):
        text = path.read_text()
        for banned in ("derf_zoo.models", "derf_zoo.tasks", "derf_zoo.data"):
            assert banned not in text, f"{path.name} mentions {banned}"


def test_save_refuses_a_non_empty_folder_and_overwrite_replaces_it_whole(tiny_folder, tmp_path):
    model, folder = tiny_folder
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match=r"already holds files.*notes.txt.*overwrite=True"):
        model.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing touched
    save_pretrained(model, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(HUB_FILES)  # no stray file survives


def test_a_failed_save_leaves_no_half_folder(tiny_folder, tmp_path, monkeypatch):
    model, _ = tiny_folder
    import derf_zoo.hub.folder as folder_module

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(folder_module, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        save_pretrained(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "folder"]  # neither "out" nor a staging folder


def test_push_uploads_only_hub_files(tiny_folder):
    _, folder = tiny_folder
    (folder / "scratch.ckpt").write_bytes(b"x")
    with pytest.warns(UserWarning, match="not uploading scratch.ckpt"):
        staged = push_to_hub(folder, "me/x", dry_run=True)
    assert sorted(p.name for p in Path(staged).iterdir()) == sorted(HUB_FILES)


def test_saves_are_byte_identical_and_record_what_they_hold(tiny_folder, tmp_path):
    model, folder = tiny_folder
    again = model.save_pretrained(tmp_path / "again")
    assert sha256_file(again / "model.safetensors") == sha256_file(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    assert config["weights_sha256"] == sha256_file(folder / "model.safetensors")
    assert config["task_type"] == "image-classification"


def test_an_edited_norm_in_config_json_is_refused(tiny_folder):
    _, folder = tiny_folder
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["norm"] = "satursin"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsMismatchError, match=r'norm: weights "derf" vs config.json "satursin"'):
        from_pretrained(folder)


def test_a_callable_norm_names_its_site_when_saved(tmp_path):
    model = derf_zoo.vit_nano_derf(norm={"default": "derf", "mlp": lambda n, **kw: derf_zoo.DyT(n)}, embed_dim=16,
                                   depth=1, num_heads=2)  # fmt: skip
    with pytest.raises(ValueError, match="site 'mlp' is the Python callable"):
        model.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_hub_cache_blob_name_is_checked(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = b"weights"
    import hashlib

    good = blobs / hashlib.sha256(data).hexdigest()
    good.write_bytes(data)
    link = tmp_path / "model.safetensors"
    link.symlink_to(good)
    assert verify_cached_file(link) == link
    good.write_bytes(b"tampered")
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        verify_cached_file(link)
    small = blobs / hashlib.sha1(b"blob 2\0{}").hexdigest()  # a git blob (config.json and other small files)
    small.write_bytes(b"{}")
    assert verify_cached_file(small) == small


def test_unpinned_manifest_weights_need_verify_false(hub_cache, seed, tiny_folder, monkeypatch):
    _, folder = tiny_folder
    seed(hub_cache, "someone/vit", folder)
    entry = manifest_module.ReleasedWeights(name="vit_nano_derf.unpinned", repo_id="someone/vit", dataset="d",
                                            produced_by="p", license="l",
                                            model_args={"embed_dim": 32, "depth": 2, "num_heads": 2})  # fmt: skip
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (entry,))
    with pytest.raises(WeightsIntegrityError, match=r"pins no sha256.*verify=False"):
        derf_zoo.create_model("vit_nano_derf.unpinned", pretrained=True)
    with pytest.warns(UserWarning, match="unverified"):
        derf_zoo.create_model("vit_nano_derf.unpinned", pretrained=True, verify=False)


def test_integer_weights_are_refused_not_cast():
    model = derf_zoo.vit_nano_derf(embed_dim=16, depth=1, num_heads=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["pos_embed"] = state["pos_embed"].long()
    with pytest.raises(WeightsMismatchError, match=r"dtype mismatches: pos_embed: torch.int64 in the weights vs"):
        load_into(model, state, source="test")
    state["pos_embed"] = model.state_dict()["pos_embed"].half()  # another float precision is fine
    load_into(model, state, source="test")


def test_a_head_of_another_width_is_named(tmp_path):
    narrow = derf_zoo.vit_nano_derf(embed_dim=16, depth=1, num_heads=2)
    wide = derf_zoo.vit_nano_derf(embed_dim=16, depth=1, num_heads=2)
    state = dict(wide.state_dict())
    state["head.weight"] = torch.zeros(10, 32)
    with pytest.raises(WeightsMismatchError, match=r"takes \(32,\) features in the weights but \(16,\) in the model"):
        load_into(narrow, state, source="test")


def test_a_model_without_a_declared_classifier_never_loses_its_head(tmp_path):
    model = derf_zoo.vit_nano_derf(embed_dim=16, depth=1, num_heads=2)
    model.pretrained_cfg = {k: v for k, v in model.pretrained_cfg.items() if k != "classifier"}
    state = dict(model.state_dict())
    state["head.weight"] = torch.zeros(3, 16)
    state["head.bias"] = torch.zeros(3)
    with pytest.raises(WeightsMismatchError, match=r"head.weight: weights \(3, 16\) vs model \(10, 16\)"):
        load_into(model, state, source="test")


def test_the_card_takes_the_task_type_and_metrics_it_is_given(tiny_folder):
    model, _ = tiny_folder
    from derf_zoo.hub import model_config

    card = model_card(model, model_config(model), metrics={"fid": 18.92}, dataset="imagenet-1k",
                      task_type="unconditional-image-generation")  # fmt: skip
    assert "pipeline_tag: unconditional-image-generation" in card and "| fid | 18.92 |" in card
    assert "image-classification" not in card


def test_a_weights_file_saved_without_our_metadata_still_loads(tiny_folder, tmp_path):
    model, folder = tiny_folder
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text((folder / "config.json").read_text().replace('"weights_sha256"', '"x"'))
    save_file(model.state_dict(), plain / "model.safetensors", metadata={"format": "pt"})
    loaded = from_pretrained(plain)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def _edited_copy(folder, tmp_path, edit):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_every_model_argument_is_bound_to_the_weights(tmp_path):
    # An added argument that exists (and so builds) but changes the outputs: the weights' record says otherwise.
    model = derf_zoo.create_model("dit_nano_derf", hidden_size=32, depth=1, num_heads=2).eval()
    folder = save_pretrained(model, tmp_path / "dit")
    edited = _edited_copy(folder, tmp_path, lambda c: c["model_args"].update(timestep_freq_shift=1.0))
    with pytest.raises(WeightsMismatchError, match=r"timestep_freq_shift: weights \(absent\) vs config.json 1.0"):
        from_pretrained(edited)
    assert from_pretrained(folder) is not None  # the untouched folder loads
    shutil.rmtree(edited)
    edited = _edited_copy(folder, tmp_path, lambda c: c["pretrained_cfg"].update(mean=[0.0]))
    with pytest.raises(WeightsMismatchError, match=r"mean: weights .* vs config.json \[0.0\]"):
        from_pretrained(edited)


def test_deleting_the_sha_from_config_json_does_not_turn_the_check_off(tiny_folder, tmp_path):
    _, folder = tiny_folder
    edited = _edited_copy(folder, tmp_path, lambda c: c.pop("weights_sha256"))
    with pytest.raises(WeightsIntegrityError, match=r"config.json has no weights_sha256, but model.safetensors was "
                                                    r"written by derf_zoo"):  # fmt: skip
        from_pretrained(edited)
