"""Judging samples of handwritten digits with the released digits ViT: a Fréchet distance and a class accuracy.

No Inception network is available offline, so the digits DiTs' samples are judged by the zoo's released digits ViT
(``vit_nano_ln.digits``, trained on the same training split): the Fréchet distance between its pre-logit features
of the samples and of the held-out real digits (an FID with that ViT in place of Inception; comparable only between
models judged the same way), and the share of samples it classifies as the class asked for. The ``derf-zoo demo``
DiT part, the release of the digits DiTs and their cards use it; :func:`real_reference` gives the real digits the
numbers are compared with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from derf_zoo.data.constants import DIGITS_MEAN, DIGITS_STD
from derf_zoo.diffusion.fid import FrechetDistance

__all__ = ["JUDGE", "JUDGE_SIZE", "SAMPLES_PER_CLASS", "JudgeFeatures", "judge", "load_judge", "real_reference"]

#: The judge: the released digits ViT (16x16 inputs, the digits DataModule's preprocessing).
JUDGE = "vit_nano_ln.digits"
JUDGE_SIZE = 16
#: Real training digits per class in the reference (and samples per class the demo draws).
SAMPLES_PER_CLASS = 10


class JudgeFeatures(torch.nn.Module):
    """The judge ViT's pre-logit features of 8x8 images in [0, 1] (bilinear to 16x16, digits mean/std)."""

    def __init__(self, judge: torch.nn.Module) -> None:
        super().__init__()
        self.judge = judge

    @staticmethod
    def inputs(images: torch.Tensor) -> torch.Tensor:
        """The judge's inputs for ``images`` (N, 1, 8, 8) in [0, 1]: resized to 16x16, normalised as its data was."""
        x = F.interpolate(images.float(), size=JUDGE_SIZE, mode="bilinear", align_corners=False)
        return (x - DIGITS_MEAN[0]) / DIGITS_STD[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.forward_head(self.judge.forward_features(self.inputs(images)), pre_logits=True)

    @torch.no_grad()
    def class_accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Share (%) of ``images`` the judge classifies as ``labels``."""
        self.judge.eval()
        return 100.0 * float((self.judge(self.inputs(images)).argmax(-1) == labels).float().mean())


def load_judge() -> JudgeFeatures:
    """The released digits ViT (:data:`JUDGE`, ``pretrained=True``) as a judge, in eval mode."""
    from derf_zoo.models import create_model

    return JudgeFeatures(create_model(JUDGE, pretrained=True).eval())


def judge(features: JudgeFeatures, images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """Fréchet distance (judge features) of ``images`` to the ``real`` held-out images, and class accuracy (%).

    Returns:
        ``{"fd": ..., "class_acc": ...}``.
    """
    return {"fd": FrechetDistance(features)(images, real), "class_acc": features.class_accuracy(images, labels)}


def real_reference(per_class: int = SAMPLES_PER_CLASS,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(``per_class`` real training digits per class, their labels, the held-out digits), images in [0, 1].

    The training digits are drawn per class with a ``torch.Generator`` seeded ``seed``; the held-out digits are the
    digits DataModule's whole validation split (fixed stratified 20 %).
    """
    from derf_zoo.data.generation import DigitsGenerationDataModule, to_pixels

    data = DigitsGenerationDataModule(img_size=8)
    data.setup("fit")
    train_x, train_y = data.train_set.images, data.train_set.labels
    generator = torch.Generator().manual_seed(seed)
    picks = torch.cat([torch.nonzero(train_y == c).flatten()[torch.randperm(int((train_y == c).sum()),
                                                                            generator=generator)[:per_class]]
                       for c in range(int(train_y.max()) + 1)])  # fmt: skip
    return to_pixels(train_x[picks]), train_y[picks], to_pixels(data.val_set.images)
