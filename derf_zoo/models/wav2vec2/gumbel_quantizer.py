"""wav2vec 2.0's Gumbel-softmax product quantizer (fairseq ``GumbelVectorQuantizer``), temperature in the state."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GumbelQuantizer", "QuantizerOutput"]


@dataclass
class QuantizerOutput:
    """Attributes:
    quantized: the chosen codevectors, concatenated over groups, ``(..., vq_dim)``.
    prob_perplexity: perplexity of the batch-averaged *soft* code distribution over the selected frames, summed
        over groups (fairseq's ``prob_perplexity``; what the diversity loss uses).
    code_perplexity: the same of the *hard* (argmax) choices (fairseq's ``code_perplexity``; transformers' eval
        ``codevector_perplexity``).
    """

    quantized: Tensor
    prob_perplexity: Tensor
    code_perplexity: Tensor


def _perplexity(probs: Tensor) -> Tensor:
    """``exp(entropy)`` per group of the mean distribution ``probs`` (N, G, V) -> summed over groups."""
    avg = probs.mean(dim=0)
    return torch.exp(-torch.sum(torch.xlogy(avg, avg), dim=-1)).sum()


class GumbelQuantizer(nn.Module):
    """G groups of V codevectors; each frame picks one per group (hard Gumbel-softmax in training, argmax in eval).

    The temperature is a buffer, so a checkpoint keeps it; :meth:`set_num_updates` applies the schedule
    ``max(max_temp * decay ** step, min_temp)`` (fairseq's ``latent_temp``).

    Args:
        in_dim: width of the features to quantize (512, the CNN's).
        num_groups: G (2).
        num_vars: V, codevectors per group (320).
        vq_dim: output width (codevectors are ``vq_dim / G`` wide each).
        temperature: ``(max_temp, min_temp, decay)``.
    """

    def __init__(self, in_dim: int, num_groups: int = 2, num_vars: int = 320, vq_dim: int = 256,
                 temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)) -> None:  # fmt: skip
        super().__init__()
        if vq_dim % num_groups:
            raise ValueError(f"GumbelQuantizer: vq_dim {vq_dim} is not divisible by num_groups {num_groups}.")
        if len(temperature) != 3:
            raise ValueError(f"temperature must be (max_temp, min_temp, decay), got {temperature!r}.")
        self.num_groups = num_groups
        self.num_vars = num_vars
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in temperature)
        self.weight_proj = nn.Linear(in_dim, num_groups * num_vars)
        self.codevectors = nn.Parameter(torch.empty(num_groups, num_vars, vq_dim // num_groups))
        self.register_buffer("temperature", torch.tensor(self.max_temp))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """fairseq: codevectors uniform [0, 1), projection normal(0, 1) with zero bias."""
        nn.init.uniform_(self.codevectors)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    def temperature_at(self, step: int) -> float:
        """The Gumbel-softmax temperature of optimizer step ``step`` (fairseq's ``latent_temp`` schedule).

        Args:
            step: the optimizer step (updates so far, 0 at the start).

        Returns:
            ``max(max_temp * temp_decay ** step, min_temp)``: ``max_temp`` at step 0, decaying to ``min_temp``.
        """
        return max(self.max_temp * self.temp_decay**step, self.min_temp)

    def set_num_updates(self, step: int) -> None:
        """Set the temperature for optimizer step ``step`` (fairseq calls this every update)."""
        self.temperature.fill_(self.temperature_at(step))

    def forward(self, x: Tensor, select: Tensor | None = None) -> QuantizerOutput:
        """Quantize ``x`` (..., in_dim); perplexities over the frames where ``select`` (bool, x.shape[:-1]) is True."""
        lead = x.shape[:-1]
        logits = self.weight_proj(x).reshape(-1, self.num_groups, self.num_vars).float()
        chosen = logits if select is None else logits[select.reshape(-1)]
        with torch.no_grad():
            hard = F.one_hot(chosen.argmax(-1), self.num_vars).float()
            code_perplexity = _perplexity(hard)
        prob_perplexity = _perplexity(chosen.softmax(-1))
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=float(self.temperature), hard=True)
        else:
            onehot = F.one_hot(logits.argmax(-1), self.num_vars).to(logits.dtype)
        # (N, G, V) x (G, V, d) -> (N, G, d): a batched matmul, not the (N, G*V, d) product transformers builds.
        q = torch.einsum("ngv,gvd->ngd", onehot.to(self.codevectors.dtype), self.codevectors)
        return QuantizerOutput(q.reshape(*lead, -1), prob_perplexity, code_perplexity)
