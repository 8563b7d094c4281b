"""`derf-zoo export` of a pretrained DNA language model: config, card (token-id input line) and identical logits."""

import json

import torch
from torch import nn

import derf_zoo
from derf_zoo.cli import main
from derf_zoo.hub.card import _example_call, _input_line
from derf_zoo.recipes import recipe_path
from derf_zoo.training import lightning_cli


def test_export_of_a_pretrained_dna_lm_loads_back_with_the_same_logits(tmp_path):
    run = tmp_path / "run"
    recipe = "hyenadna/hyenadna_nano_derf_ecoli.yaml"
    cli = lightning_cli(["fit", "-c", str(recipe_path(recipe)), "--trainer.max_steps=2",
                         "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
                         "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run}",
                         f"--checkpoint.dirpath={run / 'ckpt'}"])  # fmt: skip
    trained = cli.model.model.eval()
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(run / "ckpt" / "last.ckpt"), "--out", str(out), "--eval",
                 "--name", "hyenadna_nano_derf.mine", "--recipe", f"recipes/{recipe}"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "hyenadna_nano_derf" and config["task_type"] == "text-generation"
    card = (out / "README.md").read_text()
    assert "DNA token ids (batch, length), length <= 258" in card and "torch.randint(7, 11, (1, 256))" in card
    assert "mean ()" not in card and "| perplexity |" in card
    loaded = derf_zoo.from_pretrained(out).eval()
    ids = torch.randint(7, 11, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids), trained(ids))


def test_card_describes_token_inputs_for_either_dna_config():
    """The Input line and usage example come from each family's data config; an image config gets the default."""
    from derf_zoo.models.caduceus import DNA_DATA_CFG

    caduceus = derf_zoo.create_model("caduceus_nano_derf")
    assert "length <= 1024" in _input_line(DNA_DATA_CFG, caduceus)
    assert "randint(7, 11, (1, 256))" in _example_call(DNA_DATA_CFG, caduceus)
    short = derf_zoo.create_model("hyenadna_nano_derf", max_seq_len=66)  # the example fits its context
    assert "length <= 66;" in _input_line(short.pretrained_cfg, short)
    assert "randint(7, 11, (1, 66))" in _example_call(short.pretrained_cfg, short)
    image = {"input_size": (3, 8, 8), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0, "interpolation": "bicubic"}
    assert _input_line(image, nn.Module()).startswith("- **Input:** (3, 8, 8), mean (0.5,)")
    assert _example_call(image, nn.Module()) == "\noutput = model(torch.randn(1, *(3, 8, 8)))"


def test_the_card_code_knows_no_family_and_config_json_holds_no_card_text(tmp_path):
    """Family knowledge (token ids, DNA keys, DiT's call) lives in the families; the card texts are not saved."""
    import inspect

    from derf_zoo.hub import card

    source = inspect.getsource(card).lower()
    for word in ("dna", "space", "vocabulary", "randint", "x_t", "waveform", "sample_rate", "image-generation"):
        assert word not in source, word
    folder = derf_zoo.create_model("hyenadna_nano_derf").save_pretrained(tmp_path / "h")
    assert not [k for k in json.loads((folder / "config.json").read_text())["pretrained_cfg"] if k.startswith("card_")]
    assert "length <= 258; A C G T N" in (folder / "README.md").read_text()
