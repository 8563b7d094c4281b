"""The digits judge (derf_zoo.diffusion.digits_judge: the DiT demo's and the digits cards'): the released digits
ViT's Fréchet distance and class accuracy on real and noise images."""

import torch

from derf_zoo.diffusion import digits_judge as dj


def test_judge_scores_real_digits_well_and_noise_badly():
    features = dj.load_judge()
    real_x, real_y, held_out = dj.real_reference()
    assert real_x.shape == (100, 1, 8, 8) and torch.equal(real_y, torch.arange(10).repeat_interleave(10))
    assert held_out.shape[0] > 300 and float(held_out.min()) >= 0 and float(held_out.max()) <= 1
    real = dj.judge(features, real_x, real_y, held_out)
    noise = dj.judge(features, torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)), real_y,
                           held_out)  # fmt: skip
    assert real["class_acc"] >= 90 and noise["class_acc"] <= 50
    assert 0 < real["fd"] < noise["fd"] / 5
    assert dj.judge(features, held_out, torch.zeros(len(held_out), dtype=torch.long), held_out)["fd"] < 1e-6
    assert features(real_x).shape == (100, 64)
