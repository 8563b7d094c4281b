"""FID while training: torchmetrics' ``FrechetInceptionDistance`` between the DiT's samples and real images, with
Inception or any feature extractor that exists offline."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo._validate import check_int
from derf_zoo.callbacks._sampling import check_sampling_args, device_of, due, resolve_vae, sampling_network, sandbox
from derf_zoo.diffusion.sampling import decode_latents, draw

__all__ = ["FID", "ImageFeatures", "fid_labels", "resolve_feature", "to_uint8"]

INCEPTION = "inception"


class ImageFeatures(nn.Module):
    """A classifier of the zoo as a feature extractor: uint8 images (N, C, H, W) -> pre-logit features (N, D).

    The images are scaled to [0, 1], resized (bilinear) to the model's input size, given its channels (grey
    repeated to RGB, RGB averaged to grey) and normalised by its ``pretrained_cfg`` mean/std, as its training data
    was. ``num_features`` tells torchmetrics the feature width (it would otherwise probe with 299x299 images).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        cfg = getattr(model, "pretrained_cfg", None) or {}
        channels, height, width = cfg.get("input_size") or (
            model.patch_embed.proj.in_channels, *model.patch_embed.img_size)  # fmt: skip
        self.size, self.channels = (height, width), channels
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.0,) * channels)).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (1.0,) * channels)).view(1, -1, 1, 1), False)
        self.num_features = int(model.num_features)

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(self.mean.device, torch.float32) / 255.0
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _import(path: str) -> Callable[[], nn.Module]:
    module, _, name = path.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), name)


def resolve_feature(feature: str | nn.Module, seed: int = 0) -> nn.Module | None:
    """The extractor for ``feature`` (None for ``"inception"``: torchmetrics builds it).

    ``feature`` is a module (used as given: it receives uint8 images (N, C, H, W)), a released name
    (``"vit_nano_ln.digits"``), a registered architecture (random weights seeded by ``seed``: comparable only with
    the same seed), or the import path of a factory returning a module (``"package.module:make_extractor"``).

    Raises:
        ValueError: a name that is none of these, with the valid choices.
    """
    if isinstance(feature, nn.Module) or feature == INCEPTION:
        return feature if isinstance(feature, nn.Module) else None
    from derf_zoo.models import create_model, list_models

    if feature in list_models(pretrained=True):
        return ImageFeatures(create_model(feature, pretrained=True))
    if feature in list_models():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ImageFeatures(create_model(feature))
    if "." in feature or ":" in feature:
        try:
            factory = _import(feature)
        except (ImportError, AttributeError):
            factory = None
        if callable(factory):
            module = factory()
            if not isinstance(module, nn.Module):
                raise ValueError(f"FID feature {feature!r} returned {type(module).__name__}, not an nn.Module.")
            return module
    released = ", ".join(list_models(pretrained=True))
    raise ValueError(f"Unknown FID feature {feature!r}. Valid: 'inception' (needs torch-fidelity and its weights), "
                     f"a released model ({released}), a registered architecture (derf-zoo list), or the import path "
                     "of a factory returning an nn.Module ('package.module:make_extractor').")  # fmt: skip


def inception_metric(weights_path: str | None) -> Any:
    """torchmetrics' FID with its 2048-d Inception features; RuntimeError saying what to do when unavailable."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    hint = ("On an offline machine pass feature= a released model (e.g. 'vit_nano_ln.digits'), a registered "
            "architecture or the import path of an nn.Module factory, or inception_weights= a local copy of "
            "torch-fidelity's 'weights-inception-2015-12-05-6726825d.pth'.")  # fmt: skip
    try:
        return FrechetInceptionDistance(feature=2048, reset_real_features=False,
                                        feature_extractor_weights_path=weights_path, sync_on_compute=False)  # fmt: skip
    except ModuleNotFoundError as err:
        raise RuntimeError(f"FID feature 'inception' needs torch-fidelity ({err}; pip install torch-fidelity) and "
                           "its Inception weights, which it downloads from GitHub on first use: impossible on an "
                           f"offline machine. {hint}") from None
    except OSError as err:  # the weights download failed (urllib's URLError is an OSError)
        raise RuntimeError(f"FID feature 'inception': the Inception weights cannot be downloaded ({err}). "
                           f"{hint}") from None


def to_uint8(x: Tensor) -> Tensor:
    """Pixel-space images in [-1, 1] (the generation DataModules' range) -> uint8, as :func:`draw` rounds them."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def fid_labels(num_samples: int, num_classes: int) -> Tensor:
    """Class labels of the FID samples: every class in turn (balanced, as ImageNet's validation set is)."""
    return torch.arange(num_samples) % num_classes


def _rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class FID(L.Callback):
    """Log ``val/fid`` (lower is better) every ``every_n_epochs`` epochs: the Fréchet distance between the features
    of ``num_samples`` samples and of the real validation images, by torchmetrics' ``FrechetInceptionDistance``.

    ``feature="inception"`` is the standard FID (2048-d pool features; torch-fidelity and its downloaded weights,
    or ``inception_weights`` a local copy); anything else (see :func:`resolve_feature`) is an FID in another feature
    space, comparable only between runs that use the same extractor. The value equals
    :func:`derf_zoo.diffusion.frechet_distance` of the same features' statistics.

    Real statistics are computed once: from ``reference_stats`` (an ``.npz`` with ``mu`` and ``sigma``, as ADM's
    reference batches such as ``VIRTUAL_imagenet256_labeled.npz`` hold: the DiT way, no validation split needed),
    else from the DataModule's validation images (a latent DataModule's latents decoded by ``vae``). Samples are
    drawn as :class:`SampleGrid` draws them (rank 0, no gradients, eval mode, forked RNG, the EMA weights when an
    ``EMAWeightAveraging`` callback keeps them; skipped in ``fast_dev_run``), with labels cycling over the classes
    and the same seed every time. The paper's FID-50K is computed after training instead (``derf-zoo sample`` ->
    ``.npz`` -> ADM's evaluator): this callback is a cheaper progress signal.

    Under DDP only rank 0 draws and featurises; the others wait for it in the broadcast of the value. A long
    evaluation (large ``num_samples``, many ``steps``, a slow extractor) can outlast the process group's timeout
    (NCCL: 30 min by default, ``DDPStrategy(timeout=...)``) and kill the run: keep ``num_samples`` modest (a few
    thousand at most) and leave the full FID to ``derf-zoo sample`` after training. Every rank logs rank 0's value,
    so ``val/fid`` exists everywhere; still, do not make ``ModelCheckpoint(monitor="val/fid")`` decide under DDP
    (the value is logged at the end of the training epoch, only every ``every_n_epochs`` epochs): monitor a
    validation loss and read ``val/fid`` from the logs.

    Args:
        feature: ``"inception"``, a released or registered model name, an import path, or an ``nn.Module``.
        num_samples: samples drawn (>= 2).
        every_n_epochs: evaluate after every n-th epoch.
        sampler / steps / cfg_scale / seed: how to draw (see :class:`SampleGrid`).
        batch_size: samples drawn (and images featurised) at once.
        vae: latent DiTs: the ``AutoencoderKL`` decoding samples (and latent validation data).
        reference_stats: ``.npz`` with the real images' ``mu`` (D,) and ``sigma`` (D, D) in ``feature``'s space.
        inception_weights: local path of the Inception weights (``feature="inception"`` offline).
        use_average: draw from the weight average when a ``WeightAveraging`` callback keeps one.
    """

    def __init__(self, feature: str | nn.Module = INCEPTION, num_samples: int = 5000, every_n_epochs: int = 10,
                 sampler: str = "ddim", steps: int | None = None, cfg_scale: float = 1.0, seed: int = 0,
                 batch_size: int = 250, vae: str | nn.Module | None = None, reference_stats: str | None = None,
                 inception_weights: str | None = None, use_average: bool = True) -> None:  # fmt: skip
        self.steps = check_sampling_args("FID", every_n_epochs, sampler, steps, cfg_scale)
        check_int("num_samples", num_samples, 2, owner="FID", why="a covariance needs 2")
        check_int("batch_size", batch_size, 1, owner="FID")
        if reference_stats is not None and not str(reference_stats).endswith(".npz"):
            raise ValueError(f"FID: reference_stats must be an .npz with 'mu' and 'sigma', got {reference_stats!r}.")
        self.extractor = resolve_feature(feature, seed)  # unknown names fail here, at configuration time
        self.feature = feature if isinstance(feature, str) else type(feature).__name__
        self.num_samples, self.every_n_epochs, self.batch_size = num_samples, every_n_epochs, batch_size
        self.sampler, self.cfg_scale, self.seed = sampler, float(cfg_scale), int(seed)
        self.vae, self.reference_stats, self.inception_weights = vae, reference_stats, inception_weights
        self.use_average = use_average
        self.metric: Any = None
        self._real_ready = False
        self.last_value: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        network = pl_module.model
        if self.cfg_scale > 1 and not network.y_embedder.has_null_class:
            raise ValueError("FID: cfg_scale > 1 needs a null class: this DiT was built with class_dropout_prob=0.")
        if trainer.fast_dev_run or not trainer.is_global_zero or self.metric is not None:
            return
        if self.reference_stats is not None and not Path(self.reference_stats).is_file():
            raise FileNotFoundError(f"FID: reference_stats {self.reference_stats} does not exist.")
        self.vae = resolve_vae("FID", network, self.vae, device_of(network))
        self.metric = self.build_metric(device_of(network))

    def build_metric(self, device: torch.device) -> Any:
        """torchmetrics' FID (real statistics kept across resets) with this callback's extractor, on ``device``."""
        from torchmetrics.image.fid import FrechetInceptionDistance

        if self.extractor is None:
            metric = inception_metric(self.inception_weights)
        else:
            extractor = self.extractor
            if not hasattr(extractor, "num_features"):  # torchmetrics would probe it with a 299x299 image
                raise ValueError(f"FID: the feature module {type(extractor).__name__} has no num_features "
                                 "attribute (its feature width); set it.")  # fmt: skip
            metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False)
        return metric.to(device)  # sync_on_compute=False: only rank 0 computes, nothing to gather

    # ---- real statistics ---------------------------------------------------------------------------------

    def _load_reference(self) -> None:
        with np.load(self.reference_stats) as stats:
            missing = {"mu", "sigma"} - set(stats.files)
            if missing:
                raise ValueError(f"FID: {self.reference_stats} lacks {sorted(missing)} (has {stats.files}).")
            mu, sigma = np.asarray(stats["mu"], np.float64), np.asarray(stats["sigma"], np.float64)
        m = self.metric
        if mu.shape != m.real_features_sum.shape or sigma.shape != m.real_features_cov_sum.shape:
            raise ValueError(f"FID: {self.reference_stats} holds statistics of {mu.shape[0]}-d features; the "
                             f"extractor gives {m.real_features_sum.shape[0]}-d ones.")  # fmt: skip
        # torchmetrics keeps sums: n mu and sum x x^T = (n - 1) sigma + n mu mu^T; any n >= 2 gives mu and sigma back
        n = 2
        mu_t, sigma_t = torch.from_numpy(mu).to(m.real_features_sum), torch.from_numpy(sigma).to(m.real_features_sum)
        m.real_features_sum = n * mu_t
        m.real_features_cov_sum = (n - 1) * sigma_t + n * torch.outer(mu_t, mu_t)
        m.real_features_num_samples = torch.tensor(n, device=mu_t.device)

    def real_images(self, trainer: L.Trainer) -> Any:
        """The validation images as uint8 RGB batches (latents decoded by the VAE)."""
        datamodule = trainer.datamodule
        loader = datamodule.val_dataloader() if datamodule is not None else None
        if not loader:
            raise ValueError("FID: the DataModule has no validation images; pass reference_stats (an .npz with the "
                             "real images' feature mu and sigma, e.g. ADM's VIRTUAL_imagenet256_labeled.npz).")
        for batch in loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if x.shape[1] == 4 and self.vae is not None:
                yield _rgb(decode_latents(self.vae, x, self.batch_size))
            else:
                yield _rgb(to_uint8(x))

    def _update_real(self, trainer: L.Trainer) -> None:
        if self.reference_stats is not None:
            self._load_reference()
        else:
            device = self.metric.device
            for images in self.real_images(trainer):
                self.metric.update(images.to(device), real=True)
        self._real_ready = True

    # ---- evaluation ---------------------------------------------------------------------------------------

    def evaluate(self, trainer: L.Trainer, network: nn.Module) -> float:
        """FID of ``network``'s samples against the real statistics (computed on first use)."""
        device = device_of(network)
        # setup() runs before Lightning moves the model to its accelerator: follow the network there now
        self.metric = self.metric.to(device)
        if self.vae is not None:
            self.vae = self.vae.to(device)
        if not self._real_ready:
            modules = [m for m in (self.extractor, self.vae) if m is not None]
            with sandbox(*modules):
                self._update_real(trainer)
        self.metric.reset()  # the fake statistics only: reset_real_features=False
        labels = fid_labels(self.num_samples, network.num_classes)
        with sandbox(*[m for m in (network, self.extractor, self.vae) if m is not None]):
            for i, y in enumerate(labels.split(self.batch_size)):
                # batch i's noise is seeded seed + i (draw seeds each of its batches from the seed it is given)
                images = draw(network, y, cfg_scale=self.cfg_scale, sampler=self.sampler, steps=self.steps,
                              seed=self.seed + i, batch_size=len(y), device=str(device), vae=self.vae,
                              decode_batch_size=self.batch_size)  # fmt: skip
                self.metric.update(_rgb(images).to(self.metric.device), real=False)
            value = float(self.metric.compute())
        self.last_value = value
        return value

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not due(trainer, self.every_n_epochs):  # the same answer on every rank: all of them go on or none
            return
        value = self.evaluate(trainer, sampling_network(trainer, pl_module, self.use_average)) \
            if trainer.is_global_zero else float("nan")  # fmt: skip
        # every rank calls the broadcast (a collective: none is left waiting) and logs rank 0's value, so a
        # monitor of val/fid finds the same number on each rank
        value = float(trainer.strategy.broadcast(value, src=0))
        self.last_value = value
        pl_module.log("val/fid", value)
