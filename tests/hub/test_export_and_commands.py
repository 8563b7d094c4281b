"""Lightning checkpoint -> Hub folder -> model, and the export/push/download commands."""

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard

import derf_zoo
from derf_zoo.cli import main
from derf_zoo.data import DigitsDataModule
from derf_zoo.recipes import recipe_path
from derf_zoo.tasks.checkpoint import CorruptCheckpointError, record_checksum
from derf_zoo.tasks.export import export_checkpoint
from derf_zoo.training import lightning_cli

TINY = ["--model.init_args.model_args.embed_dim=32", "--model.init_args.model_args.depth=2",
        "--model.init_args.model_args.num_heads=2"]  # fmt: skip


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cli = lightning_cli(
        ["-c", str(recipe_path("vit/vit_nano_derf_digits.yaml")), *TINY, "--trainer.max_steps=6",
         "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
         "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp}", f"--checkpoint.dirpath={tmp}",
         "--checkpoint.every_n_train_steps=4", "--checkpoint.save_top_k=-1", "--checkpoint.monitor=null",
         "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging", "--trainer.callbacks.decay=0.5"],
        run=False,
    )  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # Written during training: at the end Lightning copies the EMA weights into the model (and into last.ckpt).
    return tmp / "epoch=0-step=4.ckpt"


def _val_accuracy(model):
    data = DigitsDataModule()
    data.setup("validate")
    correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in data.val_dataloader())
    return 100.0 * correct / len(data.val_set)


def test_export_ema_and_raw_weights(ema_checkpoint, tmp_path):
    ckpt = torch.load(ema_checkpoint, weights_only=True)
    assert "current_model_state" in ckpt  # the run averaged its weights
    ema_dir, ema_metrics = export_checkpoint(ema_checkpoint, tmp_path / "ema", weights="ema", name="vit_nano_derf.t")
    raw_dir, _ = export_checkpoint(ema_checkpoint, tmp_path / "raw", weights="raw")
    ema, raw = derf_zoo.from_pretrained(ema_dir), derf_zoo.from_pretrained(raw_dir)
    torch.testing.assert_close(ema.head.weight, ckpt["state_dict"]["model.head.weight"])
    torch.testing.assert_close(raw.head.weight, ckpt["current_model_state"]["model.head.weight"])
    assert not torch.equal(ema.head.weight, raw.head.weight)
    assert ema_metrics == {}  # written before any validation: no metric recorded, none invented
    card = (ema_dir / "README.md").read_text()
    assert "EMA" in card and 'create_model("vit_nano_derf.t", pretrained=True)' in card
    config = json.loads((ema_dir / "config.json").read_text())
    assert config["model_args"]["norm"] == "derf"  # "alpha=auto" of the recipe is not carried into the release


def test_export_eval_matches_an_independent_evaluation(ema_checkpoint, tmp_path):
    folder, metrics = export_checkpoint(ema_checkpoint, tmp_path / "out", evaluate=True)
    model = derf_zoo.from_pretrained(folder)
    with torch.no_grad():
        assert metrics["acc1"] == pytest.approx(_val_accuracy(model))
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results[0].metric_value == pytest.approx(metrics["acc1"])


def test_raw_export_of_a_final_checkpoint_warns(ema_checkpoint, tmp_path):
    # A checkpoint written after fit ends: Lightning has copied the average into the model, so both agree.
    ckpt = torch.load(ema_checkpoint, weights_only=True)
    ckpt["current_model_state"] = dict(ckpt["state_dict"])
    record_checksum(ckpt)  # as Lightning would have written it
    final = tmp_path / "final.ckpt"
    torch.save(ckpt, final)
    with pytest.warns(UserWarning, match="'raw' weights are the EMA weights"):
        export_checkpoint(final, tmp_path / "raw", weights="raw")


def test_export_errors(ema_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="weights must be 'ema' or 'raw'"):
        export_checkpoint(ema_checkpoint, tmp_path, weights="best")
    ckpt = torch.load(ema_checkpoint, weights_only=True)
    del ckpt["current_model_state"]
    record_checksum(ckpt)
    no_ema = tmp_path / "no_ema.ckpt"
    torch.save(ckpt, no_ema)
    with pytest.raises(ValueError, match="no averaged weights"):
        export_checkpoint(no_ema, tmp_path / "x", weights="ema")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        export_checkpoint(garbage, tmp_path / "y")
    tampered = torch.load(ema_checkpoint, weights_only=True)
    next(iter(tampered["state_dict"].values())).add_(1.0)
    torch.save(tampered, tmp_path / "tampered.ckpt")
    with pytest.raises(CorruptCheckpointError, match=r"tampered\.ckpt"):
        export_checkpoint(tmp_path / "tampered.ckpt", tmp_path / "z")
    assert not (tmp_path / "z").exists()


def test_export_refuses_nonfinite_metrics(ema_checkpoint, tmp_path):
    # A diverged run that skipped its way to the end: its card would say "loss: nan".
    ckpt = torch.load(ema_checkpoint, weights_only=True)
    ckpt["derf_zoo_val_metrics"] = {"val/acc1": 0.1, "val/loss": float("nan")}
    torch.save(ckpt, tmp_path / "diverged.ckpt")
    with pytest.raises(ValueError, match=r"diverged\.ckpt: its recorded metrics are not finite \(loss = nan\)"):
        export_checkpoint(tmp_path / "diverged.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="not finite"):
        main(["export", "--ckpt", str(tmp_path / "diverged.ckpt"), "--out", str(tmp_path / "out")])


def test_export_command_errors_are_one_line(ema_checkpoint, tmp_path):
    for bad, what in ((tmp_path / "missing.ckpt", "is missing"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit, match=re.escape(f"--ckpt {bad} {what}")):
            main(["export", "--ckpt", str(bad), "--out", str(tmp_path / "o")])
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SystemExit, match=r"Cannot read .*notes\.txt as a Lightning checkpoint"):
        main(["export", "--ckpt", str(text), "--out", str(tmp_path / "o")])
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already holds files"):
        main(["export", "--ckpt", str(ema_checkpoint), "--out", str(out)])
    assert main(["export", "--ckpt", str(ema_checkpoint), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists()


def test_export_push_download_commands(ema_checkpoint, tmp_path, capsys):
    out = tmp_path / "folder"
    assert main(["export", "--ckpt", str(ema_checkpoint), "--out", str(out), "--weights", "raw"]) == 0
    assert "derf-zoo push" in capsys.readouterr().out
    assert main(["push", str(out), "--repo-id", "me/x", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "dry run" in printed and "sha256:" in printed
    assert main(["download", "nothing.here"]) == 1
    assert "derf-zoo download: error: Unknown released weight 'nothing.here'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"Unknown released weight 'nothing\.here'"):
        main(["download", "nothing.here", "--debug"])  # the traceback, when asked for
