"""wav2vec 2.0's Gumbel quantizer against closed forms: the codevector each frame picks, the perplexities of a
uniform and of a one-code distribution, the frame selection, and the straight-through one-hot of training."""

import math

import pytest
import torch

from derf_zoo.models.wav2vec2.gumbel_quantizer import GumbelQuantizer


def _quantizer(groups: int = 2, num_vars: int = 5, vq_dim: int = 6) -> GumbelQuantizer:
    torch.manual_seed(0)
    return GumbelQuantizer(in_dim=4, num_groups=groups, num_vars=num_vars, vq_dim=vq_dim)


def test_eval_picks_the_argmax_codevector_of_each_group():
    quantizer = _quantizer().eval()
    x = torch.randn(3, 7, 4)
    out = quantizer(x).quantized
    logits = quantizer.weight_proj(x).view(3, 7, 2, 5)
    # a loop over frames and groups: concatenate codevectors[g, argmax_v logits[..., g, v]]
    for b in range(3):
        for t in range(7):
            expected = torch.cat([quantizer.codevectors[g, logits[b, t, g].argmax()] for g in range(2)])
            torch.testing.assert_close(out[b, t], expected)
    assert out.shape == (3, 7, 6)


def test_perplexities_of_a_uniform_and_of_a_one_code_distribution():
    quantizer = _quantizer(groups=2, num_vars=5).eval()
    torch.nn.init.zeros_(quantizer.weight_proj.weight)
    torch.nn.init.zeros_(quantizer.weight_proj.bias)
    out = quantizer(torch.randn(2, 9, 4))
    # every logit 0: the soft distribution is uniform (perplexity V per group), every hard choice is code 0 (1)
    assert out.prob_perplexity.item() == pytest.approx(2 * 5)
    assert out.code_perplexity.item() == pytest.approx(2 * 1)


def test_perplexity_is_exp_entropy_of_the_mean_distribution_over_the_selected_frames():
    quantizer = _quantizer(groups=2, num_vars=5).eval()
    x = torch.randn(2, 6, 4)
    select = torch.rand(2, 6) < 0.5
    select[0, 0] = True
    out = quantizer(x, select=select)
    probs = quantizer.weight_proj(x[select]).view(-1, 2, 5).softmax(-1)
    expected = 0.0
    for g in range(2):
        avg = probs[:, g].mean(0)
        expected += math.exp(-sum(p * math.log(p) for p in avg.tolist()))
    assert out.prob_perplexity.item() == pytest.approx(expected, rel=1e-5)
    # the frames left out do not count: quantizing the selected frames alone gives the same perplexities
    alone = quantizer(x[select])
    torch.testing.assert_close(alone.prob_perplexity, out.prob_perplexity)
    torch.testing.assert_close(alone.code_perplexity, out.code_perplexity)


def test_training_picks_one_codevector_per_group_and_passes_gradients_to_the_logits():
    quantizer = _quantizer().train()
    x = torch.randn(4, 3, 4)
    out = quantizer(x).quantized.view(4, 3, 2, 3)
    for g in range(2):
        # each output group is exactly one of its group's codevectors (hard one-hot forward)
        distance = (out[:, :, g, None, :] - quantizer.codevectors[g]).abs().sum(-1)
        assert (distance.min(-1).values < 1e-6).all()
    out.sum().backward()
    assert quantizer.weight_proj.weight.grad.abs().sum() > 0  # straight-through: the logits learn


def test_temperature_schedule_and_bad_arguments():
    quantizer = GumbelQuantizer(4, num_groups=2, num_vars=3, vq_dim=4, temperature=(2.0, 0.5, 0.5))
    assert [quantizer.temperature_at(s) for s in (0, 1, 2, 10)] == [2.0, 1.0, 0.5, 0.5]
    quantizer.set_num_updates(1)
    assert quantizer.temperature.item() == 1.0
    with pytest.raises(ValueError, match="vq_dim 5 is not divisible by num_groups 2"):
        GumbelQuantizer(4, num_groups=2, vq_dim=5)
