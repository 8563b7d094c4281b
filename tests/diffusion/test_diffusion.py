"""Gaussian diffusion against closed forms, an oracle denoiser and diffusers' DDPMScheduler."""

import math

import pytest
import torch

from derf_zoo.diffusion import (
    ClassifierFreeGuidance,
    GaussianDiffusion,
    create_diffusion,
    discretized_gaussian_log_likelihood,
    normal_kl,
    space_timesteps,
)


def test_linear_schedule_is_hos():
    d = create_diffusion("")
    torch.testing.assert_close(d.betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    assert d.num_timesteps == 1000 and d.timestep_map.tolist() == list(range(1000))
    # other step counts keep the same process: both ends scale with 1000 / steps
    assert create_diffusion("", diffusion_steps=500).betas[-1].item() == pytest.approx(0.04)


def test_schedule_matches_diffusers_ddpm_scheduler():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    d = create_diffusion("")
    torch.testing.assert_close(d.betas.float(), ref.betas, rtol=0, atol=1e-8)
    torch.testing.assert_close(d.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_q_sample_and_posterior_closed_forms():
    d = create_diffusion("")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    t = torch.tensor([0, 1, 500, 999])
    ab = d.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(d.q_sample(x0, t, noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
    # q(x_{t-1} | x_t, x_0) from Bayes: N(x_t; sqrt(a_t) x_{t-1}, b_t) * N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1-abar_{t-1})
    xt = d.q_sample(x0, t, noise)
    mean, var, log_var = d.q_posterior_mean_variance(x0, xt, t)
    a = (1 - d.betas[t]).view(-1, 1, 1, 1)
    b = d.betas[t].view(-1, 1, 1, 1)
    abp = d.alphas_cumprod_prev[t].view(-1, 1, 1, 1)
    precision = a / b + 1 / (1 - abp)
    ref_mean = (a.sqrt() / b * xt.double() + abp.sqrt() / (1 - abp) * x0.double()) / precision
    torch.testing.assert_close(mean[1:], ref_mean[1:].float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(var[1:], (1 / precision[1:]).float().expand_as(var[1:]), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(mean[0], x0[0])  # t = 0: the posterior collapses on x_0
    assert log_var[0, 0, 0, 0].item() == pytest.approx(math.log(d.posterior_variance[1].item()), rel=1e-6)


def test_eps_x0_conversions_are_inverse():
    d = create_diffusion("")
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([5, 300, 900])
    xt = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.predict_xstart_from_eps(xt, t, eps), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d.predict_eps_from_xstart(xt, t, x0), eps, rtol=1e-4, atol=1e-4)


def test_respacing_keeps_the_original_process_at_the_kept_steps():
    base = create_diffusion("")
    for spec, count in (("250", 250), ("ddim50", 50), ("10,15,20", 45)):
        d = create_diffusion(spec)
        keep = d.timestep_map
        assert len(keep) == d.num_timesteps == count and keep[0] == 0
        torch.testing.assert_close(d.alphas_cumprod, base.alphas_cumprod[keep], rtol=1e-12, atol=0)
    assert create_diffusion("ddim50").timestep_map.tolist() == list(range(0, 1000, 20))
    assert space_timesteps(1000, "250")[-1] == 999
    with pytest.raises(ValueError, match="Cannot take exactly"):
        space_timesteps(1000, "ddim333")
    with pytest.raises(ValueError, match="Cannot divide a section"):
        space_timesteps(10, "11")
    # the respaced model is called with the ORIGINAL timesteps
    seen = []
    d = create_diffusion("ddim50")
    d.p_mean_variance(lambda x, t: seen.append(t.tolist()) or torch.zeros(2, 2, 2, 2), torch.zeros(2, 1, 2, 2),
                      torch.tensor([49, 1]))  # fmt: skip
    assert seen == [[980, 20]]


def _oracle(d, x0):
    """A denoiser that knows x_0: it returns the exact epsilon of x_t, and v = 0 for the variance."""

    def model(x, t_original, **_):
        t = torch.searchsorted(d.timestep_map, t_original)
        ab = d.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], dim=1)

    return model


@pytest.mark.parametrize("spec, method", [("ddim25", "ddim"), ("50", "ddpm")])
def test_an_oracle_recovers_x0(spec, method):
    d = create_diffusion(spec)
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    out = d.sample_loop(_oracle(d, x0), x0.shape, method=method, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_hybrid_loss_is_mse_plus_vlb_with_the_mean_detached():
    d = create_diffusion("")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([0, 10, 700])
    out = torch.randn(3, 2, 4, 4, generator=g).clamp(-1, 1).requires_grad_(True)
    terms = d.training_losses(lambda x, t: out, x0, t, noise=noise)
    torch.testing.assert_close(terms["mse"], ((noise - out[:, :1]) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    # the VLB term at t > 0 is KL(q || p) in bits per dim; at t = 0 the decoder NLL
    xt = d.q_sample(x0, t, noise)
    p = d.p_mean_variance_from_output(out.detach(), xt, t, clip_denoised=False)
    qm, _, qlv = d.q_posterior_mean_variance(x0, xt, t)
    kl = normal_kl(qm, qlv, p["mean"], p["log_variance"]).mean(dim=(1, 2, 3)) / math.log(2)
    torch.testing.assert_close(terms["vb"][1:], kl[1:])
    nll = -discretized_gaussian_log_likelihood(x0, means=p["mean"], log_scales=0.5 * p["log_variance"])
    torch.testing.assert_close(terms["vb"][0], nll[0].mean() / math.log(2))
    # the VLB trains only the variance channels
    (grad,) = torch.autograd.grad(terms["vb"].sum(), out)
    assert grad[:, :1].abs().max() == 0 and grad[:, 1:].abs().max() > 0


def test_normal_kl_matches_torch_distributions():
    m1, m2, lv1, lv2 = torch.randn(4), torch.randn(4), torch.randn(4), torch.randn(4)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp()))  # fmt: skip
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref)


def test_learned_range_interpolates_between_posterior_and_beta():
    d = create_diffusion("")
    x, t = torch.zeros(2, 1, 2, 2), torch.tensor([100, 100])
    out = torch.cat([torch.zeros(2, 1, 2, 2), torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)], dim=1)
    lv = d.p_mean_variance_from_output(out, x, t)["log_variance"]
    assert lv[0, 0, 0, 0].item() == pytest.approx(d.posterior_log_variance_clipped[100].item(), rel=1e-6)
    assert lv[1, 0, 0, 0].item() == pytest.approx(math.log(d.betas[100].item()), rel=1e-6)


def test_classifier_free_guidance():
    class Toy(torch.nn.Module):
        num_classes = 3

        def forward(self, x, t, y):
            eps = x * (1.0 + y.view(-1, 1, 1, 1).float())
            return torch.cat([eps, y.view(-1, 1, 1, 1).float().expand_as(x)], dim=1)

    x, t, y = torch.randn(2, 1, 2, 2), torch.tensor([4, 4]), torch.tensor([0, 2])
    guided = ClassifierFreeGuidance(Toy(), scale=2.5)(x, t, y)
    cond, uncond = x * (1.0 + y.view(-1, 1, 1, 1)), x * 4.0  # null class 3
    torch.testing.assert_close(guided[:, :1], uncond + 2.5 * (cond - uncond))
    torch.testing.assert_close(guided[:, 1:], y.view(-1, 1, 1, 1).float().expand_as(x))  # conditional variance
    torch.testing.assert_close(ClassifierFreeGuidance(Toy(), scale=1.0)(x, t, y), Toy()(x, t, y))
    with pytest.raises(ValueError, match="guidance scale must be a finite number, got inf"):
        ClassifierFreeGuidance(Toy(), scale=float("inf"))


def test_bad_arguments_are_refused():
    d = create_diffusion("")
    with pytest.raises(ValueError, match=r"t must lie in \[0, 999\]"):
        d.q_sample(torch.zeros(1, 1, 2, 2), torch.tensor([1000]))
    with pytest.raises(ValueError, match="learn_sigma=True"):
        d.p_mean_variance(lambda x, t: x, torch.zeros(1, 1, 2, 2), torch.tensor([3]))
    with pytest.raises(ValueError, match="Unknown noise schedule"):
        create_diffusion("", noise_schedule="cosine")
    with pytest.raises(ValueError, match="betas must be"):
        GaussianDiffusion([0.0, 0.1])


def test_fixed_variances_and_the_device_table_cache():
    for sigma_small, table in ((False, "fixed_large_log_variance"), (True, "posterior_log_variance_clipped")):
        d = create_diffusion("", learn_sigma=False, sigma_small=sigma_small)
        x, t = torch.zeros(2, 1, 2, 2), torch.tensor([0, 10])
        lv = d.p_mean_variance_from_output(torch.zeros_like(x), x, t)["log_variance"]
        torch.testing.assert_close(lv[:, 0, 0, 0], getattr(d, table)[t].float())
    assert d.fixed_large_log_variance[5].item() == pytest.approx(math.log(d.betas[5].item()))
    # tables cross to another device once, not on every call (checked here with the meta device)
    d = create_diffusion("")
    x = torch.zeros(2, 1, 2, 2, device="meta")
    for _ in range(3):
        d._at(d.sqrt_alphas_cumprod, torch.tensor([1, 2], device="meta"), x)
    assert len(d._device_tables) == 1
