"""Gaussian diffusion for DiT: schedules, respacing, the hybrid loss, DDPM/DDIM sampling, guidance, Fréchet distance.

After ADM / improved-diffusion as vendored in facebookresearch/DiT ``diffusion/`` (credited in each module);
:func:`create_diffusion` takes the official factory's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from derf_zoo.diffusion.fid import FrechetDistance, feature_statistics, frechet_distance
from derf_zoo.diffusion.gaussian import GaussianDiffusion
from derf_zoo.diffusion.guidance import ClassifierFreeGuidance
from derf_zoo.diffusion.likelihood import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from derf_zoo.diffusion.schedules import NOISE_SCHEDULES, get_named_beta_schedule, space_timesteps

__all__ = [
    "NOISE_SCHEDULES",
    "ClassifierFreeGuidance",
    "FrechetDistance",
    "GaussianDiffusion",
    "create_diffusion",
    "discretized_gaussian_log_likelihood",
    "feature_statistics",
    "frechet_distance",
    "get_named_beta_schedule",
    "mean_flat",
    "normal_kl",
    "space_timesteps",
]


def create_diffusion(
    timestep_respacing: str | int | Sequence[int] | None,
    noise_schedule: str = "linear",
    use_kl: bool = False,
    sigma_small: bool = False,
    predict_xstart: bool = False,
    learn_sigma: bool = True,
    rescale_learned_sigmas: bool = False,
    diffusion_steps: int = 1000,
) -> GaussianDiffusion:
    """The official DiT factory: ``create_diffusion(timestep_respacing="")`` trains (1000 steps),
    ``create_diffusion("250")`` samples with 250 DDPM steps, ``create_diffusion("ddim50")`` with 50 DDIM steps.

    Args:
        timestep_respacing: ``None``/``""`` for every step, else see :func:`space_timesteps`.
        noise_schedule: ``"linear"`` (DiT) or ``"squaredcos_cap_v2"``.
        use_kl: train on the VLB alone (``"rescaled_kl"``).
        sigma_small: with a fixed variance, the posterior's instead of beta.
        predict_xstart: the model predicts x_0 instead of epsilon.
        learn_sigma: the model also predicts the variance (DiT: yes; output channels 2C).
        rescale_learned_sigmas: scale the VLB term by T/1000 (``"rescaled_mse"``).
        diffusion_steps: steps of the training process.
    """
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    loss_type = "rescaled_kl" if use_kl else ("rescaled_mse" if rescale_learned_sigmas else "mse")
    kwargs = {
        "mean_type": "x0" if predict_xstart else "epsilon",
        "var_type": "learned_range" if learn_sigma else ("fixed_small" if sigma_small else "fixed_large"),
        "loss_type": loss_type,
    }
    if timestep_respacing is None or timestep_respacing == "":
        return GaussianDiffusion(betas, **kwargs)
    return GaussianDiffusion.respaced(betas, space_timesteps(diffusion_steps, timestep_respacing), **kwargs)
