"""`derf-zoo fit` -> `derf-zoo export --eval` for a SpeechPretraining run: a Hub folder whose card says
feature-extraction and the validation loss in bits, and whose weights reload to the same loss."""

import json

import pytest
from huggingface_hub import ModelCard

import derf_zoo
from derf_zoo.cli import main
from derf_zoo.data import SpeechDataModule
from derf_zoo.recipes import recipe_path
from derf_zoo.tasks import SpeechPretraining

SMALL = {"conv_dim": "[16,16,16,16,16,16,16]", "embed_dim": 32, "depth": 1, "num_heads": 2, "ffn_dim": 64,
         "final_dim": 16, "num_codevectors": 8, "num_negatives": 5, "pos_conv_kernel": 8, "pos_conv_groups": 2}


@pytest.mark.slow
def test_export_of_a_speech_pretraining_checkpoint(tmp_path, capsys):
    ckpt_dir = tmp_path / "ckpt"
    assert main(["fit", "-c", str(recipe_path("wav2vec2/wav2vec2_tiny_derf_speech.yaml")), "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=1", "--trainer.enable_progress_bar=false",
                 "--trainer.enable_model_summary=false", "--trainer.logger=false",
                 f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={ckpt_dir}",
                 *(f"--model.init_args.model_args.{k}={v}" for k, v in SMALL.items())]) == 0  # fmt: skip
    out = tmp_path / "hub"
    assert main(["export", "--ckpt", str(ckpt_dir / "last.ckpt"), "--out", str(out), "--eval",
                 "--name", "wav2vec2_tiny_derf.t", "--recipe", "recipes/wav2vec2/wav2vec2_tiny_derf_speech.yaml"]) == 0
    assert "loss" in capsys.readouterr().out
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "feature-extraction"
    stated = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert set(stated) == {"loss", "contrastive"} and 2.0 < stated["loss"] < 10.0
    assert "loss: pretraining loss on held-out audio, bits per masked frame" in card.text  # the metric explained
    assert "mono waveform (batch, samples) at 16000 Hz" in card.text and "interpolation" not in card.text
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "wav2vec2_tiny_derf" and config["model_args"]["embed_dim"] == 32
    # the exported weights reproduce the card's loss under the task's evaluation (same data, same seeds)
    model = derf_zoo.from_pretrained(out)
    data = SpeechDataModule(embedded=True, max_sample_size=32000, max_tokens=128000, min_sample_size=16000)
    data.setup("validate")
    assert SpeechPretraining.evaluate(model, data.val_dataloader())["loss"] == pytest.approx(stated["loss"], abs=1e-4)
