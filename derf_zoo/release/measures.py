"""The held-out measures the demo, the released cards and the conversion benchmark compare models with: fixed
draws on fixed held-out items, so two models' numbers pair item by item (``derf_zoo.release.paired_noise``).

- DiT: the per-image diffusion loss over seeded (timestep, noise) draws (:func:`held_out_losses`);
- wav2vec 2.0: the pretraining loss of every validation clip, whole, under fixed mask/negative draws
  (:func:`clip_losses`);
- GPT-2: the next-character loss of every held-out window of Tiny Shakespeare (:func:`window_losses`).

The demo parts re-export them under their old names (``derf_zoo.commands.demo.dit.held_out_losses``, ...), which
the released cards cite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["DRAWS_PER_IMAGE", "MASK_SEEDS", "ClipLosses", "clip_losses", "held_out_losses", "held_out_windows",
           "validation_clips", "window_losses"]

#: Seeded (timestep, noise) draws per held-out image of the DiT measure.
DRAWS_PER_IMAGE = 8
#: Fixed draws of span masks and negatives per validation clip (seeds 0..7).
MASK_SEEDS = tuple(range(8))
LN2 = math.log(2.0)


@torch.no_grad()
def held_out_losses(model: torch.nn.Module, dataset: object, seed: int = 0, draws: int = DRAWS_PER_IMAGE
                    ) -> torch.Tensor:  # fmt: skip
    """Per-image diffusion loss of a DiT over ``draws`` seeded (timestep, noise) draws; the same draws for every
    model, so two models' losses pair image by image."""
    from derf_zoo.tasks.diffusion import Diffusion, _draws

    diffusion = Diffusion.make_diffusion(model)
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(y), dtype=torch.float64)
    for _ in range(draws):
        t, noise = _draws(diffusion, x, generator)
        total += diffusion.training_losses(model, x, t, model_kwargs={"y": y}, noise=noise)["loss"].double()
    return total / draws


@dataclass
class ClipLosses:
    """A model's loss on every validation clip under every mask draw: ``loss[u, s]`` bits per masked frame of clip
    ``u`` under seed ``MASK_SEEDS[s]``, ``frames[u, s]`` its masked frames, ``perplexity[u, s]`` the soft codebook
    perplexity (fairseq's ``prob_perplexity``) and ``code_perplexity[u, s]`` the hard one (distinct codes used)."""

    loss: torch.Tensor
    frames: torch.Tensor
    perplexity: torch.Tensor
    code_perplexity: torch.Tensor

    def per_clip(self) -> torch.Tensor:
        """Each clip's loss over all its draws (summed bits / summed masked frames)."""
        return (self.loss * self.frames).sum(1) / self.frames.sum(1)

    @property
    def mean(self) -> float:
        """The headline: the mean over clips of :meth:`per_clip` (every clip counts once)."""
        return float(self.per_clip().mean())


def validation_clips() -> list[torch.Tensor]:
    """The embedded validation clips, whole (16 kHz waveforms), in the split's order."""
    from derf_zoo.data import SpeechDataModule

    data = SpeechDataModule(embedded=True)
    data.setup("validate")
    return [data.val_set[i] for i in range(len(data.val_set))]


@torch.no_grad()
def clip_losses(model: torch.nn.Module, clips: list[torch.Tensor] | None = None,
                seeds: tuple[int, ...] = MASK_SEEDS) -> ClipLosses:  # fmt: skip
    """Evaluate ``model`` (eval mode: no dropout, argmax codes) on each clip alone under each seed's masks and
    negatives. The draws depend only on the clip's length and the seed, so two models see the same ones."""
    model.eval()
    clips = validation_clips() if clips is None else clips
    shape = (len(clips), len(seeds))
    loss, frames, perplexity, codes = (torch.zeros(shape, dtype=torch.float64) for _ in range(4))
    for u, wave in enumerate(clips):
        for s, seed in enumerate(seeds):
            out = model(wave[None], generator=torch.Generator().manual_seed(seed))
            n = int(out.sample_size)
            loss[u, s], frames[u, s] = float(out.loss) / n / LN2, n
            perplexity[u, s], codes[u, s] = float(out.codevector_perplexity), float(out.code_perplexity)
    return ClipLosses(loss, frames, perplexity, codes)


@torch.no_grad()
def window_losses(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Mean cross entropy (nats) per window of next-character prediction, model in eval mode."""
    model.eval()
    out = []
    for chunk in windows.split(batch_size):
        logits = model(chunk[:, :-1])
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")
        out.append(ce.double().mean(1))
    return torch.cat(out)


def held_out_windows(seq_len: int = 64) -> torch.Tensor:
    """Every non-overlapping window of ``seq_len + 1`` characters of the held-out 10 %, in text order."""
    from derf_zoo.data.text import TextDataModule

    data = TextDataModule(embedded="shakespeare", seq_len=seq_len, max_eval_windows=None, samples_per_epoch=1)
    data.setup()
    return torch.stack([data.val_set[i] for i in range(len(data.val_set))])
