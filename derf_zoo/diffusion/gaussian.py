"""Gaussian diffusion: forward process, posterior, the hybrid training loss and DDPM / DDIM sampling.

Written after ADM / improved-diffusion (Nichol & Dhariwal 2021; Dhariwal & Nichol 2021) as vendored in
facebookresearch/DiT ``diffusion/gaussian_diffusion.py`` and ``respace.py``, in PyTorch float64 instead of numpy.
Respacing is built in: a process built from kept timesteps (``timestep_map``) has the betas that reproduce the
original ``alphas_cumprod`` at those steps, and calls the model with the ORIGINAL timestep indices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from derf_zoo._validate import check_choice
from derf_zoo.diffusion.likelihood import discretized_gaussian_log_likelihood, mean_flat, normal_kl

__all__ = ["GaussianDiffusion"]

MeanType = Literal["epsilon", "x0"]
VarType = Literal["learned_range", "fixed_large", "fixed_small"]
LossType = Literal["mse", "rescaled_mse", "kl", "rescaled_kl"]
Model = Callable[..., Tensor]

_LN2 = 0.6931471805599453


class GaussianDiffusion:
    """A discrete Gaussian diffusion process and what training and sampling need from it.

    Args:
        betas: (T,) noise variances, each in (0, 1].
        mean_type: what the model's mean output predicts: ``"epsilon"`` (DiT) or ``"x0"``.
        var_type: ``"learned_range"`` (the model's second half of channels, v in [-1, 1], interpolates the log
            variance between the posterior's and beta: DiT's ``learn_sigma``), ``"fixed_large"`` (beta) or
            ``"fixed_small"`` (the posterior variance).
        loss_type: ``"mse"`` (DiT: epsilon MSE, plus the VLB term for a learned variance), ``"rescaled_mse"`` (the
            VLB term scaled by T/1000), ``"kl"`` or ``"rescaled_kl"`` (the VLB alone).
        timestep_map: original timestep of each step (respaced processes); the model sees these.
    """

    def __init__(
        self,
        betas: Tensor | Sequence[float],
        *,
        mean_type: MeanType = "epsilon",
        var_type: VarType = "learned_range",
        loss_type: LossType = "mse",
        timestep_map: Sequence[int] | None = None,
    ) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or len(betas) < 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a non-empty 1-D sequence of values in (0, 1].")
        self.mean_type = check_choice("mean_type", mean_type, ("epsilon", "x0"))
        self.var_type = check_choice("var_type", var_type, ("learned_range", "fixed_large", "fixed_small"))
        self.loss_type = check_choice("loss_type", loss_type, ("mse", "rescaled_mse", "kl", "rescaled_kl"))
        self.betas = betas
        self.num_timesteps = len(betas)
        self.timestep_map = torch.as_tensor(
            list(timestep_map) if timestep_map is not None else range(self.num_timesteps), dtype=torch.long
        )
        if len(self.timestep_map) != self.num_timesteps:
            raise ValueError(f"timestep_map has {len(self.timestep_map)} entries for {self.num_timesteps} steps.")
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.log_one_minus_alphas_cumprod = torch.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1).sqrt()
        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The posterior variance is 0 at t = 0: its log is clipped to the t = 1 value (as ADM).
        if self.num_timesteps > 1:
            self.posterior_log_variance_clipped = torch.log(
                torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
            )
        else:
            self.posterior_log_variance_clipped = torch.log(betas)
        self.log_betas = torch.log(betas)
        # fixed_large: beta, with the posterior variance at t = 0 for a better decoder likelihood (as ADM)
        self.fixed_large_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], betas[1:]])) \
            if self.num_timesteps > 1 else self.log_betas
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / (1.0 - self.alphas_cumprod)

    @classmethod
    def respaced(cls, base_betas: Tensor, use_timesteps: Sequence[int], **kwargs: Any) -> GaussianDiffusion:
        """The process that keeps only ``use_timesteps`` of the one with ``base_betas`` (same alphas_cumprod there)."""
        keep = sorted(set(int(t) for t in use_timesteps))
        if not keep or keep[0] < 0 or keep[-1] >= len(base_betas):
            raise ValueError(f"use_timesteps must lie in [0, {len(base_betas) - 1}], got {keep[:3]}...{keep[-3:]}.")
        cumprod = torch.cumprod(1.0 - torch.as_tensor(base_betas, dtype=torch.float64), dim=0)[keep]
        previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
        return cls(1.0 - cumprod / previous, timestep_map=keep, **kwargs)

    # ---- helpers -------------------------------------------------------------------------------------------

    def _at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` as ``like``'s dtype/device, shaped (N, 1, 1, ...) to broadcast over ``like``."""
        if values.device != t.device:  # one copy of each (persistent) table per device, not one per call
            cache = self.__dict__.setdefault("_device_tables", {})
            key = (id(values), t.device)
            if key not in cache:
                cache[key] = (values, values.to(t.device))  # holding values keeps its id unique
            values = cache[key][1]
        return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def _model_t(self, t: Tensor) -> Tensor:
        """The original timestep indices the model is conditioned on."""
        return self.timestep_map.to(t.device)[t]

    def _check_t(self, t: Tensor, n: int) -> Tensor:
        if t.shape != (n,) or t.dtype.is_floating_point:
            raise ValueError(f"t must be an integer tensor of shape ({n},), got {t.dtype} {tuple(t.shape)}.")
        if n and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(f"t must lie in [0, {self.num_timesteps - 1}], got {int(t.min())}..{int(t.max())}.")
        return t

    # ---- the forward process and the posterior -------------------------------------------------------------

    def q_mean_variance(self, x_start: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and log variance of q(x_t | x_0)."""
        mean = self._at(self.sqrt_alphas_cumprod, t, x_start) * x_start
        var = torch.exp(self._at(self.log_one_minus_alphas_cumprod, t, x_start)).expand_as(x_start)
        return mean, var, self._at(self.log_one_minus_alphas_cumprod, t, x_start).expand_as(x_start)

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (t = 0 is one step of noise)."""
        self._check_t(t, x_start.shape[0])
        noise = torch.randn_like(x_start) if noise is None else noise
        if noise.shape != x_start.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, x_start {tuple(x_start.shape)}.")
        return (self._at(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + self._at(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)  # fmt: skip

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x_start + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return (mean, self._at(self.posterior_variance, t, x_t).expand_as(x_t),
                self._at(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t))  # fmt: skip

    def predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - self._at(self.sqrt_recipm1_alphas_cumprod,
                                                                                  t, x_t) * eps  # fmt: skip

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, x_start: Tensor) -> Tensor:
        return ((self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x_start)
                / self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t))  # fmt: skip

    # ---- the model's p(x_{t-1} | x_t) ----------------------------------------------------------------------

    def p_mean_variance_from_output(
        self, output: Tensor, x: Tensor, t: Tensor, clip_denoised: bool = True,
        denoised_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> dict[str, Tensor]:  # fmt: skip
        """p(x_{t-1} | x_t) from a model output already computed for (x, t)."""
        c = x.shape[1]
        if self.var_type == "learned_range":
            if output.shape != (x.shape[0], 2 * c, *x.shape[2:]):
                raise ValueError(f"A learned-range variance needs a model output of shape {(x.shape[0], 2 * c)} + "
                                 f"{tuple(x.shape[2:])} (learn_sigma=True), got {tuple(output.shape)}.")  # fmt: skip
            output, var_values = output.split(c, dim=1)
            min_log = self._at(self.posterior_log_variance_clipped, t, x)
            max_log = self._at(self.log_betas, t, x)
            frac = (var_values + 1) / 2  # the model's v in [-1, 1] spans [posterior variance, beta]
            log_var = frac * max_log + (1 - frac) * min_log
        else:
            if output.shape != x.shape:
                raise ValueError(f"A fixed variance needs a model output shaped like x {tuple(x.shape)}, got "
                                 f"{tuple(output.shape)} (learn_sigma=False).")  # fmt: skip
            if self.var_type == "fixed_large":
                log_var = self._at(self.fixed_large_log_variance, t, x).expand_as(x)
            else:
                log_var = self._at(self.posterior_log_variance_clipped, t, x).expand_as(x)
        x_start = output if self.mean_type == "x0" else self.predict_xstart_from_eps(x, t, output)
        if denoised_fn is not None:
            x_start = denoised_fn(x_start)
        if clip_denoised:
            x_start = x_start.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(x_start, x, t)
        return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var, "pred_xstart": x_start}

    def p_mean_variance(self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = True,
                        denoised_fn: Callable[[Tensor], Tensor] | None = None,
                        model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:  # fmt: skip
        """Run ``model(x, original_t, **model_kwargs)`` and return mean, variance, log variance and pred_xstart."""
        self._check_t(t, x.shape[0])
        output = model(x, self._model_t(t), **(model_kwargs or {}))
        return self.p_mean_variance_from_output(output, x, t, clip_denoised, denoised_fn)

    # ---- training ------------------------------------------------------------------------------------------

    def _vb_terms_bpd(self, out: dict[str, Tensor], x_start: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """One VLB term per sample in bits per dimension: KL(q(x_{t-1}|x_t,x_0) || p) for t > 0, the decoder NLL
        of x_0 at t = 0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / _LN2
        nll = -discretized_gaussian_log_likelihood(x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        return torch.where(t == 0, mean_flat(nll) / _LN2, kl)

    def training_losses(self, model: Model, x_start: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
                        noise: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
        """Per-sample losses at timesteps ``t``: ``loss`` plus its parts ``mse`` and ``vb`` where they apply.

        With ``loss_type="mse"`` and a learned variance this is DiT's hybrid loss: the epsilon MSE plus the VLB
        term computed with the mean output DETACHED, so the VLB trains only the variance.
        """
        self._check_t(t, x_start.shape[0])
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        terms: dict[str, Tensor] = {}
        if self.loss_type in ("kl", "rescaled_kl"):
            out = self.p_mean_variance(model, x_t, t, clip_denoised=False, model_kwargs=model_kwargs)
            terms["loss"] = self._vb_terms_bpd(out, x_start, x_t, t)
            if self.loss_type == "rescaled_kl":
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms
        output = model(x_t, self._model_t(t), **(model_kwargs or {}))
        if self.var_type == "learned_range":
            c = x_t.shape[1]
            mean_out, var_values = output.split(c, dim=1)
            frozen = torch.cat([mean_out.detach(), var_values], dim=1)
            out = self.p_mean_variance_from_output(frozen, x_t, t, clip_denoised=False)
            terms["vb"] = self._vb_terms_bpd(out, x_start, x_t, t)
            if self.loss_type == "rescaled_mse":
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)
            output = mean_out
        target = noise if self.mean_type == "epsilon" else x_start
        if output.shape != target.shape:
            raise ValueError(f"The model output {tuple(output.shape)} does not match the target {tuple(target.shape)}.")
        terms["mse"] = mean_flat((target - output) ** 2)
        terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        return terms

    # ---- sampling ------------------------------------------------------------------------------------------

    @staticmethod
    def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
        if generator is None:
            return torch.randn_like(like)
        return torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)

    def p_sample(
        self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = True,
        model_kwargs: dict[str, Any] | None = None, generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:  # fmt: skip
        """One ancestral (DDPM) step: x_{t-1} ~ p(x_{t-1} | x_t); no noise at t = 0."""
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * self._noise(x, generator)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = True,
                    model_kwargs: dict[str, Any] | None = None, eta: float = 0.0,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:  # fmt: skip
        """One DDIM step (Song et al. 2021, Eq. 12); ``eta=0`` is deterministic, ``eta=1`` is DDPM-like."""
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])
        abar, abar_prev = self._at(self.alphas_cumprod, t, x), self._at(self.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
        mean = out["pred_xstart"] * abar_prev.sqrt() + torch.sqrt(1 - abar_prev - sigma**2) * eps
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        noise = self._noise(x, generator) if eta > 0 else torch.zeros_like(x)
        return {"sample": mean + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def sample_loop_progressive(self, model: Model, shape: Sequence[int], *, noise: Tensor | None = None,
                                method: Literal["ddpm", "ddim"] = "ddpm", eta: float = 0.0,
                                clip_denoised: bool = True, model_kwargs: dict[str, Any] | None = None,
                                device: torch.device | str | None = None,
                                generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:  # fmt: skip
        """Yield each step's ``{"sample", "pred_xstart"}`` from t = T-1 down to 0."""
        check_choice("method", method, ("ddpm", "ddim"))
        if noise is not None:
            x = noise
        else:
            x = torch.randn(tuple(shape), generator=generator, device=generator.device if generator else device)
            x = x.to(device) if device is not None else x
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            with torch.no_grad():
                if method == "ddpm":
                    out = self.p_sample(model, x, t, clip_denoised, model_kwargs, generator)
                else:
                    out = self.ddim_sample(model, x, t, clip_denoised, model_kwargs, eta, generator)
            yield out
            x = out["sample"]

    def sample_loop(self, model: Model, shape: Sequence[int], **kwargs: Any) -> Tensor:
        """The final sample of :meth:`sample_loop_progressive` (``method="ddpm"`` or ``"ddim"``)."""
        final = None
        for final in self.sample_loop_progressive(model, shape, **kwargs):  # noqa: B007
            pass
        assert final is not None
        return final["sample"]

    def p_sample_loop(self, model: Model, shape: Sequence[int], **kwargs: Any) -> Tensor:
        """Ancestral (DDPM) sampling; ``kwargs`` as :meth:`sample_loop_progressive`."""
        return self.sample_loop(model, shape, method="ddpm", **kwargs)

    def ddim_sample_loop(self, model: Model, shape: Sequence[int], eta: float = 0.0, **kwargs: Any) -> Tensor:
        """DDIM sampling; ``kwargs`` as :meth:`sample_loop_progressive`."""
        return self.sample_loop(model, shape, method="ddim", eta=eta, **kwargs)
