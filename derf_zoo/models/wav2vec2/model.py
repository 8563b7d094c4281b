"""The Wav2Vec2 network: its modules, forward pass and norm sites (the family's doc: ``derf_zoo.models.wav2vec2``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.layers.init import init_weights
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.models.wav2vec2.conv_feature_encoder import ConvFeatureEncoder, ExtractorMode
from derf_zoo.models.wav2vec2.conv_position import ConvPositionEmbedding
from derf_zoo.models.wav2vec2.grad_multiply import grad_multiply
from derf_zoo.models.wav2vec2.gumbel_quantizer import GumbelQuantizer
from derf_zoo.models.wav2vec2.span_masking import TooFewMaskedFramesError, compute_mask_indices, sample_negative_indices
from derf_zoo.norms.registry import NormSpec

__all__ = ["NORM_SITES", "Wav2Vec2", "Wav2Vec2Output"]


#: The norm slot of wav2vec 2.0: before/after attention, before/after the MLP, and the encoder's own norm.
NORM_SITES = ("attn", "mlp", "encoder")


@dataclass
class Wav2Vec2Output:
    """What :class:`Wav2Vec2` returns (transformers' field names where they exist).

    Attributes:
        last_hidden_state: encoder output (B, T, D).
        extract_features: LayerNorm'd CNN features (B, T, C), the quantizer's input.
        mask_time_indices: the mask used (B, T) bool, or None.
        padding_mask: True at padded frames (B, T), or None.
        loss: fairseq's summed loss (None without pretraining head or mask).
        contrastive_loss: summed cross-entropy over the masked frames.
        diversity_loss: ``(G*V - prob_perplexity) / (G*V) * sample_size``.
        feature_penalty: ``mean(features**2) * sample_size``.
        sample_size: number of masked frames (divide the sums by it for per-frame values).
        codevector_perplexity: soft perplexity (fairseq's ``prob_perplexity``).
        code_perplexity: perplexity of the hard code choices.
        sampled_negative_indices: negatives used, (B, T, K) flat indices.
        logits: contrastive logits (N_masked, 1 + K) (positive first).
    """

    last_hidden_state: Tensor
    extract_features: Tensor
    mask_time_indices: Tensor | None = None
    padding_mask: Tensor | None = None
    loss: Tensor | None = None
    contrastive_loss: Tensor | None = None
    diversity_loss: Tensor | None = None
    feature_penalty: Tensor | None = None
    sample_size: Tensor | None = None
    codevector_perplexity: Tensor | None = None
    code_perplexity: Tensor | None = None
    sampled_negative_indices: Tensor | None = None
    logits: Tensor | None = None


class Wav2Vec2(ZooModel):
    """wav2vec 2.0: conv feature encoder -> masked Transformer, with the contrastive pretraining head.

    Args:
        conv_dim / conv_kernel / conv_stride: the feature encoder's layers.
        extractor_mode: ``"group"`` (Base) or ``"layer"`` (Large); see :class:`ConvFeatureEncoder`.
        conv_bias: conv biases (None: False for group, True for layer mode).
        embed_dim / depth / num_heads / ffn_dim: the Transformer.
        norm: norm spec for every slot site, or per site (``attn``, ``mlp``, ``encoder``).
        norm_eps: eps of normalising layers in the slot (fairseq 1e-5).
        norm_first: pre-norm blocks with the encoder norm after the last block (fairseq ``layer_norm_first``);
            False: post-norm blocks with the encoder norm after the position conv (fairseq's Base).
        layer_drop: LayerDrop probability (fairseq ``encoder_layerdrop``).
        dropout / attention_dropout / activation_dropout: Transformer dropouts (also after the position conv).
        dropout_input: dropout on the projected features; dropout_features: on the quantizer input.
        feature_grad_mult: gradient multiplier into the CNN (0.1).
        pos_conv_kernel / pos_conv_groups: the position conv (128, 16).
        pretraining: build the quantizer and projections (False: the encoder only, for feature extraction).
        final_dim: width the contrastive loss compares in (256 Base, 768 Large).
        num_codevector_groups / num_codevectors: G and V of the quantizer (2 x 320).
        codevector_dim: quantizer output width (None: ``final_dim``, fairseq's ``latent_dim=0``).
        latent_temp: Gumbel temperature ``(max, min, decay)`` per update.
        num_negatives: negatives per masked frame (100).
        logit_temp: cosine-similarity temperature (0.1).
        mask_prob / mask_length / min_masks: span masking (0.65, 10, 2).
        diversity_weight / feature_penalty_weight: loss weights (0.1, 10).
        feature_projection: project the CNN features to ``embed_dim`` with a Linear. None: only when the widths
            differ (fairseq drops it when they match); True: always (transformers' layout always has it).
    """

    norm_sites = NORM_SITES
    no_weight_decay_names = frozenset({"mask_emb"})  # the learned vector that replaces masked frames

    def __init__(
        self,
        conv_dim: Sequence[int] = (512,) * 7,
        conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        extractor_mode: ExtractorMode = "group",
        conv_bias: bool | None = None,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        ffn_dim: int = 3072,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-5,
        norm_first: bool = False,
        layer_drop: float = 0.05,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        dropout_input: float = 0.1,
        dropout_features: float = 0.1,
        feature_grad_mult: float = 0.1,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        pretraining: bool = True,
        final_dim: int = 256,
        num_codevector_groups: int = 2,
        num_codevectors: int = 320,
        codevector_dim: int | None = None,
        latent_temp: Sequence[float] = (2.0, 0.5, 0.999995),
        num_negatives: int = 100,
        logit_temp: float = 0.1,
        mask_prob: float = 0.65,
        mask_length: int = 10,
        min_masks: int = 2,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        feature_projection: bool | None = None,
    ) -> None:
        super().__init__()
        check_sizes(embed_dim=embed_dim, depth=depth, num_heads=num_heads, ffn_dim=ffn_dim, final_dim=final_dim,
                    num_negatives=num_negatives)  # fmt: skip
        self.embed_dim = self.num_features = embed_dim
        self.norm_first = norm_first
        self.feature_grad_mult = float(feature_grad_mult)
        self.pretraining = pretraining
        self.num_negatives = num_negatives
        self.logit_temp = float(logit_temp)
        self.mask_prob, self.mask_length, self.min_masks = float(mask_prob), int(mask_length), int(min_masks)
        self.diversity_weight = float(diversity_weight)
        self.feature_penalty_weight = float(feature_penalty_weight)

        self.feature_extractor = ConvFeatureEncoder(conv_dim, conv_kernel, conv_stride, extractor_mode, conv_bias)
        c = self.feature_extractor.out_dim
        self.layer_norm = nn.LayerNorm(c, eps=1e-5)  # data normalisation of the features: not a slot site
        if feature_projection is False and c != embed_dim:
            raise ValueError(f"feature_projection=False needs the last conv width ({c}) to equal embed_dim "
                             f"({embed_dim}): the features must be projected to the Transformer's width.")
        project = c != embed_dim if feature_projection is None else bool(feature_projection)
        self.post_extract_proj = nn.Linear(c, embed_dim) if project else nn.Identity()
        self.dropout_input = nn.Dropout(dropout_input)
        self.dropout_features = nn.Dropout(dropout_features)
        self.mask_emb = nn.Parameter(torch.empty(embed_dim))
        self.pos_conv = ConvPositionEmbedding(embed_dim, pos_conv_kernel, pos_conv_groups, dropout)
        self.encoder_dropout = nn.Dropout(dropout)

        sites = self.resolve_norms(norm)
        # fairseq: activation_dropout inside the MLP, dropout after it. The encoder norm sits before the first block
        # (post-norm) or after the last (pre-norm) under its own name, which the checkpoints and layouts pin.
        self.backbone = Transformer(
            embed_dim, depth, num_heads=num_heads, mlp_hidden_dim=ffn_dim, qkv_bias=True,
            norm={"attn": sites["attn"], "mlp": sites["mlp"]}, norm_eps=norm_eps, norm_first=norm_first,
            layer_drop=layer_drop, attn_drop=attention_dropout, proj_drop=dropout, mlp_drop=activation_dropout,
            final_norm="none",
        )  # fmt: skip
        self.encoder_norm = self.site_norm(sites["encoder"], "encoder", embed_dim, norm_eps)

        if pretraining:
            vq_dim = codevector_dim or final_dim
            self.quantizer = GumbelQuantizer(c, num_codevector_groups, num_codevectors, vq_dim, tuple(latent_temp))
            self.project_q = nn.Linear(vq_dim, final_dim)
            self.final_proj = nn.Linear(embed_dim, final_dim)
        self.init_weights()

    # ---- init -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self) -> None:
        """fairseq's ``init_bert_params`` for the Linears (normal(0, 0.02), zero bias), uniform mask embedding;
        the CNN, the position conv and the quantizer keep their own init."""
        nn.init.uniform_(self.mask_emb)

        def bert(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        init_weights(self, bert)

    def set_num_updates(self, step: int) -> None:
        """Apply the Gumbel temperature schedule for optimizer step ``step`` (a no-op without the quantizer)."""
        if self.pretraining:
            self.quantizer.set_num_updates(step)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of inputs of ``lengths`` samples."""
        return self.feature_extractor.output_lengths(lengths)

    # ---- forward ----------------------------------------------------------------------------------------

    def _padding_mask(self, attention_mask: Tensor | None, frames: int) -> Tensor | None:
        if attention_mask is None:
            return None
        lengths = self.output_lengths(attention_mask.long().sum(-1))
        padding = torch.arange(frames, device=attention_mask.device)[None] >= lengths[:, None]
        return padding if bool(padding.any()) else None

    def sample_mask(self, frames: int, padding_mask: Tensor | None, batch: int,
                    generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """A span mask for ``batch`` rows of ``frames`` frames (fairseq semantics, padding never masked).

        Raises:
            TooFewMaskedFramesError: a row gets fewer than 2 masked frames (every row is cut to the batch's
                fewest, and the negatives need 2), e.g. one very short utterance in the batch.
        """
        lengths = None if padding_mask is None else (~padding_mask).sum(-1).cpu()
        return compute_mask_indices((batch, frames), self.mask_prob, self.mask_length, lengths, self.min_masks,
                                    generator=generator, min_masked=2)  # fmt: skip

    def samples_for_frames(self, frames: int) -> int:
        """The fewest input samples that give ``frames`` frames (the CNN's lengths are monotone: bisect them)."""
        lo, hi = 1, 1
        while int(self.output_lengths(torch.tensor([hi]))) < frames:
            lo, hi = hi + 1, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if int(self.output_lengths(torch.tensor([mid]))) < frames else (lo, mid)
        return lo

    def encode(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Projected features (B, T, D) -> encoder output: position conv, encoder norm, blocks."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x)
        if not self.norm_first:
            x = self.encoder_norm(x)
        x = self.encoder_dropout(x)
        x = self.backbone(x, key_padding_mask=padding_mask) if padding_mask is not None else self.backbone(x)
        if self.norm_first:
            x = self.encoder_norm(x)
        return x

    @staticmethod
    def _check_inputs(input_values: Tensor, attention_mask: Tensor | None) -> None:
        """Name what is wrong with the audio or its mask (else: a dtype error deep in the CNN, or frames silently
        treated as padding)."""
        if not torch.is_floating_point(input_values):
            raise ValueError(f"input_values must be a float waveform in [-1, 1], got {input_values.dtype}; convert "
                             "integer PCM first, e.g. int16 audio: x.float() / 32768.")  # fmt: skip
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}.")
        if attention_mask is None:
            return
        if tuple(attention_mask.shape) != tuple(input_values.shape):
            raise ValueError(f"attention_mask must have the shape of input_values {tuple(input_values.shape)} (1 at "
                             f"each real sample, 0 at padding), got {tuple(attention_mask.shape)}.")  # fmt: skip
        mask = attention_mask.long()
        empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"attention_mask is all zero in row(s) {empty}: such a row holds no audio at all; drop it "
                             "from the batch, or set 1 at its real samples.")  # fmt: skip
        if bool((mask[:, 1:] > mask[:, :-1]).any()) or bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("attention_mask must be right padding: 1 at the real samples, then 0 to the end of the "
                             "row (holes or other values cannot be turned into frame lengths).")

    def forward(
        self,
        input_values: Tensor,
        attention_mask: Tensor | None = None,
        mask_time_indices: Tensor | None = None,
        sampled_negative_indices: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Wav2Vec2Output:
        """Args:
        input_values: waveforms (B, samples), 16 kHz.
        attention_mask: (B, samples), 1/True at real samples, 0 at padding (right padding).
        mask_time_indices: (B, frames) bool mask; None: the pretraining model samples one (the encoder-only
            model masks nothing); all False: no masking and no loss.
        sampled_negative_indices: (B, frames, K) flat indices into (B * frames), transformers' layout; None:
            sampled from the same row's masked frames.
        generator: CPU generator for the sampled mask and negatives (deterministic validation).
        """
        self._check_inputs(input_values, attention_mask)
        features = self.feature_extractor(input_values)
        features = grad_multiply(features, self.feature_grad_mult).transpose(1, 2)
        features_pen = features.float().pow(2).mean()
        features = self.layer_norm(features)
        batch, frames, _ = features.shape
        padding_mask = self._padding_mask(attention_mask, frames)
        x = self.dropout_input(self.post_extract_proj(features))

        if mask_time_indices is None and self.pretraining:
            try:
                mask_time_indices = self.sample_mask(frames, padding_mask, batch, generator).to(x.device)
            except TooFewMaskedFramesError as err:
                samples = input_values.shape[-1] if attention_mask is None else int(attention_mask[err.row].sum())
                raise ValueError(f"{err} Row {err.row} ({err.frames} frame(s), {samples} samples) is too short: "
                                 f"keep utterances of at least {self.samples_for_frames(self.mask_length)} samples "
                                 f"({self.mask_length} frames, one mask span).") from err  # fmt: skip
        if mask_time_indices is not None:
            mask_time_indices = mask_time_indices.to(device=x.device, dtype=torch.bool)
            if mask_time_indices.shape != (batch, frames):
                raise ValueError(f"mask_time_indices must have shape {(batch, frames)} (frames of this audio), got "
                                 f"{tuple(mask_time_indices.shape)}.")  # fmt: skip
            x = torch.where(mask_time_indices[..., None], self.mask_emb.to(x.dtype), x)
        x = self.encode(x, padding_mask)
        out = Wav2Vec2Output(last_hidden_state=x, extract_features=features, mask_time_indices=mask_time_indices,
                             padding_mask=padding_mask)  # fmt: skip
        if not self.pretraining or mask_time_indices is None or not bool(mask_time_indices.any()):
            return out  # nothing masked: nothing to predict (an all-False mask encodes the audio unmasked)
        return self._pretraining_loss(out, self.dropout_features(features), features_pen, sampled_negative_indices,
                                      generator)  # fmt: skip

    def _pretraining_loss(self, out: Wav2Vec2Output, unmasked: Tensor, features_pen: Tensor,
                          negatives: Tensor | None, generator: torch.Generator | None) -> Wav2Vec2Output:  # fmt: skip
        mask = out.mask_time_indices
        batch, frames, _ = unmasked.shape
        if negatives is None:
            negatives = sample_negative_indices(mask, self.num_negatives, generator)
        negatives = negatives.to(device=mask.device, dtype=torch.long)
        if negatives.shape[:2] != (batch, frames):
            raise ValueError(f"sampled_negative_indices must have shape ({batch}, {frames}, K), got "
                             f"{tuple(negatives.shape)}.")  # fmt: skip
        q = self.quantizer(unmasked, select=mask)
        y = self.project_q(q.quantized)  # (B, T, F) targets
        flat = y.reshape(batch * frames, -1)
        pos = y[mask]  # (N, F)
        negs = flat[negatives[mask]]  # (N, K, F)
        pred = self.final_proj(out.last_hidden_state[mask])  # (N, F)
        targets = torch.cat([pos[:, None], negs], dim=1)
        logits = torch.cosine_similarity(pred.float()[:, None], targets.float(), dim=-1) / self.logit_temp
        # A negative identical to the positive (a collapsed codebook) cannot be told apart: drop it (fairseq).
        neg_is_pos = (pos[:, None] == negs).all(-1)
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(neg_is_pos, float("-inf"))], dim=1)
        sample_size = mask.sum()
        contrastive = F.cross_entropy(logits, logits.new_zeros(logits.shape[0], dtype=torch.long), reduction="sum")
        num_vars = self.quantizer.num_groups * self.quantizer.num_vars
        diversity = (num_vars - q.prob_perplexity) / num_vars * sample_size
        penalty = features_pen * sample_size
        loss = contrastive + self.diversity_weight * diversity + self.feature_penalty_weight * penalty
        out.loss, out.contrastive_loss, out.diversity_loss, out.feature_penalty = loss, contrastive, diversity, penalty
        out.sample_size = sample_size
        out.codevector_perplexity, out.code_perplexity = q.prob_perplexity, q.code_perplexity
        out.sampled_negative_indices, out.logits = negatives, logits
        return out
