"""``derf-zoo release PART``: parts, refusal before any work, the manifest written through YAML, a tiny real part."""

import hashlib
import math
from types import SimpleNamespace

import pytest
import yaml

from derf_zoo.cli import main
from derf_zoo.commands import release as release_command
from derf_zoo.hub.manifest import load_manifest


def _fake_part(calls):
    """A part that releases an untrained ViT-nano (no training: the command's own logic is what is tested)."""

    def release(args):
        from derf_zoo import create_model
        from derf_zoo.release import publish

        calls.append(args.part)
        model = create_model("vit_nano_derf").eval()
        return [publish(model, args.dest, "vit_nano_derf.check", recipe="recipes/vit/vit_nano_derf_digits.yaml",
                        dataset="sklearn-digits", split="validation: 359 images", metrics={"acc1": 10.0},
                        produced_by="not trained: a test of derf-zoo release", eval_protocol="none",
                        overwrite=args.overwrite)]  # fmt: skip

    return SimpleNamespace(__doc__="A test part.", HELP="a test part", COMMENT="Test releases.",
                           add_arguments=lambda parser: None, names=lambda args: ["vit_nano_derf.check"],
                           release=release)  # fmt: skip


def test_every_part_has_help_and_a_bad_part_lists_the_valid_ones(capsys):
    assert set(release_command.PARTS) == {"gpt2", "wav2vec2", "dit", "dna", "fmnist", "converted"}
    with pytest.raises(SystemExit) as exit_info:
        main(["release", "vitt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'vitt'" in err and all(f"'{name}'" in err for name in release_command.PARTS)
    for name in release_command.PARTS:
        with pytest.raises(SystemExit):
            main(["release", name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--overwrite" in text and "default: refuse" in text and "--dest" in text


def test_release_writes_folder_and_entry_and_refuses_to_overwrite_before_any_work(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setitem(release_command.PARTS, "check", _fake_part(calls))
    dest, manifest = tmp_path / "checkpoints", tmp_path / "manifest.yaml"
    manifest.write_text("# Released weights.\nweights:\n  # An existing group.\n  - name: vit_nano_ln.old\n"
                        "    embedded: checkpoints/vit_nano_ln.old\n    produced_by: by hand\n    license: mit\n"
                        "    dataset: sklearn-digits\n")  # fmt: skip
    argv = ["release", "check", "--dest", str(dest), "--manifest", str(manifest)]
    assert main(argv) == 0 and calls == ["check"]
    (old, new) = load_manifest(manifest)
    assert old.name == "vit_nano_ln.old" and new.name == "vit_nano_derf.check" and new.metrics == {"acc1": 10.0}
    weights = (dest / "vit_nano_derf.check" / "model.safetensors").read_bytes()
    assert new.sha256 == hashlib.sha256(weights).hexdigest() and new.embedded == "checkpoints/vit_nano_derf.check"
    assert manifest.read_text().startswith("# Released weights.\nweights:\n  # An existing group.\n")
    assert "  # Test releases.\n" in manifest.read_text()

    before = manifest.read_text()
    assert main(argv) == 1 and calls == ["check"]  # refused before the part ran
    err = capsys.readouterr().err
    assert "vit_nano_derf.check already released" in err and "--overwrite" in err
    assert manifest.read_text() == before

    assert main([*argv, "--overwrite"]) == 0 and calls == ["check", "check"]
    entries = yaml.safe_load(manifest.read_text())["weights"]
    assert [e["name"] for e in entries] == ["vit_nano_ln.old", "vit_nano_derf.check"]  # replaced in place
    assert manifest.read_text().count("# Test releases.") == 1


def test_leftover_exports_are_refused_before_training(tmp_path, monkeypatch, capsys):
    from derf_zoo.commands.demo import gpt2

    monkeypatch.setattr(gpt2, "train_one", lambda *a, **k: pytest.fail("trained despite a leftover export"))
    monkeypatch.setattr(gpt2, "held_out_windows", lambda: None)
    (tmp_path / "runs" / "export" / "gpt2_nano_ln.shakespeare").mkdir(parents=True)
    (tmp_path / "runs" / "export" / "gpt2_nano_ln.shakespeare" / "config.json").write_text("{}")
    argv = ["release", "gpt2", "--out", str(tmp_path / "runs"), "--dest", str(tmp_path / "checkpoints")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "exports of gpt2_nano_ln.shakespeare" in err and "--overwrite" in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_the_gpt2_part_on_a_tiny_budget(tmp_path, monkeypatch, capsys):
    """The real gpt2 part, shrunken (1 epoch of 2 steps, 64 held-out windows): train, export, re-measure, release."""
    from derf_zoo.commands.demo import gpt2
    from derf_zoo.data.text import TextDataModule

    def some_windows(seq_len=64):
        data = TextDataModule(embedded="shakespeare", seq_len=seq_len, max_eval_windows=64, samples_per_epoch=1)
        data.setup()
        return __import__("torch").stack([data.val_set[i] for i in range(len(data.val_set))])

    monkeypatch.setattr(gpt2, "TRAINER_ARGS", ["--data.init_args.samples_per_epoch=64",
                                               "--data.init_args.max_eval_windows=4"])  # fmt: skip
    monkeypatch.setitem(gpt2.SAMPLE, "chars", 20)
    monkeypatch.setattr(gpt2, "held_out_windows", some_windows)
    dest = tmp_path / "checkpoints"
    argv = ["release", "gpt2", "--epochs", "1", "--out", str(tmp_path / "runs"), "--dest", str(dest)]
    assert main(argv) == 0
    entries = {w.name: w for w in load_manifest(dest / "manifest.yaml")}
    assert set(entries) == {"gpt2_nano_derf.shakespeare", "gpt2_nano_ln.shakespeare"}
    for name, w in entries.items():
        assert hashlib.sha256((dest / name / "model.safetensors").read_bytes()).hexdigest() == w.sha256
        assert math.isclose(w.metrics["perplexity"], math.exp(w.metrics["loss"]), rel_tol=1e-3)
        assert "2 steps" in w.produced_by and "--epochs 1 overrode" in w.produced_by
        card = (dest / name / "README.md").read_text()
        assert str(w.metrics["loss"]) in card and "pipeline check" in card
    assert "sample:" in capsys.readouterr().out


@pytest.mark.slow
def test_a_conversion_run_is_measured_and_released(tmp_path, capsys):
    """The real converted part on a 2-step HyenaDNA conversion run: it reads the run's checkpoint, measures student
    and teacher on the same held-out windows and writes a card that states both (this step once broke silently)."""
    from derf_zoo.recipes import recipe_path

    run = tmp_path / "run"
    assert main(["fit", "-c", str(recipe_path("hyenadna/hyenadna_nano_derf_from_ln_ecoli.yaml")),
                 "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                 f"--trainer.default_root_dir={run}", f"--checkpoint.dirpath={run / 'ckpt'}"]) in (0, None)  # fmt: skip
    dest, manifest = tmp_path / "checkpoints", tmp_path / "manifest.yaml"
    manifest.write_text("weights: []\n")
    argv = ["release", "converted", "hyenadna", str(run / "ckpt" / "last.ckpt"), "--dest", str(dest),
            "--manifest", str(manifest)]  # fmt: skip
    assert main(argv) == 0
    (entry,) = load_manifest(manifest)
    assert entry.name == "hyenadna_nano_derf.from_ln_ecoli" and math.isfinite(entry.metrics["loss"])
    assert "distilled for 2 steps" in entry.produced_by and "against the teacher's 1.35" in entry.produced_by
    assert (dest / entry.name / "model.safetensors").is_file()


@pytest.mark.parametrize("start", ["weights:\n", "weights: []\n", "# Released weights.\n"])
def test_a_first_entry_goes_into_an_empty_manifest(tmp_path, start):
    from derf_zoo.release.manifest import add_entries

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(start)
    assert load_manifest(manifest) == []
    entry = {"name": "vit_nano_derf.check", "embedded": "checkpoints/vit_nano_derf.check", "license": "mit",
             "dataset": "sklearn-digits", "produced_by": "a test"}  # fmt: skip
    add_entries(manifest, [entry])
    assert [w.name for w in load_manifest(manifest)] == ["vit_nano_derf.check"]
