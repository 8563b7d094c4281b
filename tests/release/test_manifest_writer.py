"""derf_zoo.release.add_entries: entries go into manifest.yaml through YAML, and nothing else in the file moves."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from derf_zoo.hub.manifest import load_manifest
from derf_zoo.release import ManifestEntryExistsError, add_entries

PACKAGED = Path(__file__).resolve().parents[2] / "derf_zoo" / "checkpoints" / "manifest.yaml"


def _entry(name, **changes):
    entry = {"name": name, "embedded": f"checkpoints/{name}", "sha256": "0" * 64, "recipe": "recipes/x.yaml",
             "dataset": "sklearn-digits", "split": "validation: 359 images, 'quoted'",  # YAML-special characters
             "metrics": {"acc1": 99.16, "acc5": 100.0},
             "produced_by": "trained by derf_zoo: `derf-zoo release x` " + "a long card sentence, " * 12,
             "license": "apache-2.0", "default": True}  # fmt: skip
    return {**entry, **changes}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "manifest.yaml"
    shutil.copy(PACKAGED, path)
    return path


def test_new_entries_are_appended_and_the_rest_of_the_file_is_unchanged(manifest):
    before = manifest.read_text()
    old = yaml.safe_load(before)["weights"]
    new = [_entry("vit_nano_derf.check"), _entry("vit_nano_ln.check", default=False)]
    add_entries(manifest, new, comment="Two checks.\nData: none.")
    after = manifest.read_text()
    assert after.startswith(before)  # every byte of the old file, comments included, stays in place
    assert "  # Two checks.\n  # Data: none.\n  - name: vit_nano_derf.check\n" in after
    assert yaml.safe_load(after)["weights"] == old + new  # the entries round-trip exactly
    assert [w.name for w in load_manifest(manifest)][-2:] == ["vit_nano_derf.check", "vit_nano_ln.check"]


def test_an_existing_entry_is_refused_unless_overwrite_and_then_replaced_in_place(manifest):
    before = manifest.read_text()
    old = yaml.safe_load(before)["weights"]
    name = old[3]["name"]  # dit_nano_derf.digits: inside the list, a comment block after its neighbour
    with pytest.raises(ManifestEntryExistsError, match=rf"already lists {name}.*--overwrite"):
        add_entries(manifest, [_entry(name)])
    assert manifest.read_text() == before  # refused: untouched
    add_entries(manifest, [_entry(name, metrics={"loss": 0.5})], overwrite=True)
    after = yaml.safe_load(manifest.read_text())["weights"]
    assert after[3] == _entry(name, metrics={"loss": 0.5})
    assert after[:3] == old[:3] and after[4:] == old[4:]  # order and every other entry kept
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in manifest.read_text().splitlines() if line.lstrip().startswith("#")]


def test_a_missing_manifest_is_created_and_an_invalid_entry_writes_nothing(tmp_path):
    path = tmp_path / "fresh" / "manifest.yaml"
    add_entries(path, [_entry("vit_nano_derf.check")])
    assert yaml.safe_load(path.read_text()) == {"weights": [_entry("vit_nano_derf.check")]}
    before = path.read_text()
    with pytest.raises(ValueError, match="missing fields"):
        add_entries(path, [{"name": "vit_nano_ln.check", "embedded": "checkpoints/x"}])
    assert path.read_text() == before and [p.name for p in path.parent.iterdir()] == ["manifest.yaml"]


def test_the_packaged_manifest_and_weights_are_untouched_by_the_tests():
    # The release tests write into tmp folders only: the shipped manifest still lists what it did.
    names = [w.name for w in load_manifest(PACKAGED)]
    assert "gpt2_nano_derf.shakespeare" in names and not any(n.endswith(".check") for n in names)
    weights = load_manifest(PACKAGED)[0]
    folder = PACKAGED.parent / weights.name
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == weights.sha256
