"""The released nano GPT-2s: they load offline, reproduce the held-out loss their cards state, and their cards'
usage example runs and decodes to Shakespeare's characters."""

import math

import pytest
import torch
from huggingface_hub import ModelCard

import derf_zoo
from derf_zoo.hub import released_weights, sha256_file

GPT2 = [w for w in released_weights() if w.architecture.startswith("gpt2_nano") and w.tag == "shakespeare"]


def test_the_release_is_derf_and_layernorm():
    assert sorted(w.architecture for w in GPT2) == ["gpt2_nano_derf", "gpt2_nano_ln"]


@pytest.mark.slow
@pytest.mark.parametrize("weights", GPT2, ids=lambda w: w.name)
def test_gpt2_weights_reproduce_the_loss_their_card_states(weights):
    from derf_zoo.release.measures import held_out_windows, window_losses

    folder = weights.embedded_path()
    assert sha256_file(folder / "model.safetensors") == weights.sha256
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "text-generation"
    stated = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert stated == weights.metrics and set(stated) == {"loss", "perplexity"}
    model = derf_zoo.create_model(weights.name, pretrained=True)
    loss = float(window_losses(model, held_out_windows()).mean())
    assert loss == pytest.approx(stated["loss"], abs=1e-3) and math.exp(loss) == pytest.approx(stated["perplexity"],
                                                                                                abs=1e-2)
    # the card's usage lines run as written
    namespace = {"torch": torch, "model": model, "derf_zoo": derf_zoo}
    exec(model.pretrained_cfg["card_example"], namespace)
    assert len(namespace["text"]) == 51 and namespace["ids"].shape == (1, 51)
    assert model.pretrained_cfg["card_example"].splitlines()[0] in card.text
