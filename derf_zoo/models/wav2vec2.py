"""wav2vec 2.0 (Baevski et al., 2020) on the shared backbone: self-supervised speech pretraining with a norm slot.

Architecture and loss follow fairseq's ``wav2vec2.py`` and ``wav2vec_criterion.py`` (the code the Derf paper
trains, its §3.3): the conv feature encoder (:mod:`derf_zoo.layers.conv_feature_encoder`), the feature penalty
and 0.1 gradient multiplier into it, LayerNorm(512) on the features, the post-extract projection, a learned
mask embedding, the conv relative position embedding, the Transformer (post-norm for fairseq's Base,
``layer_norm_first`` pre-norm for Large and for the paper's rows), and the pretraining head: a Gumbel product
quantizer on the (unmasked) CNN features, ``project_q``, ``final_proj``, span masking, 100 negatives from the
same utterance's masked frames and the contrastive loss.

Norm sites (the slot, what ``norm=`` sets): ``attn`` and ``mlp`` in every block and ``encoder``, the encoder's
own LayerNorm (after the position conv for post-norm, after the last block for pre-norm). The CNN's
GroupNorm/LayerNorm and the LayerNorm(512) on the features normalise the data and stay real normalisation.

The loss is fairseq's: summed over the masked frames (``sample_size`` = their number), ``contrastive +
0.1 * diversity + 10 * feature penalty``, where ``diversity = (G*V - prob_perplexity) / (G*V) * sample_size``
and ``feature penalty = mean(features**2) * sample_size``; fairseq divides the gradient by ``sample_size`` and
logs ``loss / sample_size / ln 2`` (bits per masked frame: the papers' validation loss).

transformers' ``Wav2Vec2ForPreTraining`` differs: no feature penalty or gradient multiplier, and in evaluation
mode its diversity loss uses the perplexity of the hard (argmax) codes; ours always uses the soft one (fairseq),
and reports the hard one as ``code_perplexity``. :func:`from_transformers` imports its weights.

Public fairseq checkpoints are pickles; they are never unpickled here. Extract the model's state dict yourself
(``torch.load(path, weights_only=True)`` works on fairseq checkpoints that hold only tensors; otherwise load it in
a fairseq environment and save ``state_dict()`` as safetensors) and pass it to :func:`from_fairseq`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import load_into
from derf_zoo.layers.conv_feature_encoder import ConvFeatureEncoder, ExtractorMode
from derf_zoo.layers.conv_position import ConvPositionEmbedding
from derf_zoo.layers.grad_multiply import grad_multiply
from derf_zoo.layers.gumbel_quantizer import GumbelQuantizer
from derf_zoo.layers.init import init_weights
from derf_zoo.layers.span_masking import TooFewMaskedFramesError, compute_mask_indices, sample_negative_indices
from derf_zoo.models._builder import build_model, check_int
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import tag_site

__all__ = ["NORM_SITES", "Wav2Vec2", "Wav2Vec2Output", "from_fairseq", "from_transformers"]

#: The norm slot of wav2vec 2.0: before/after attention, before/after the MLP, and the encoder's own norm.
NORM_SITES = ("attn", "mlp", "encoder")
# One second of 16 kHz audio per example. The model takes (batch, samples): no channel axis, so the model card's usage
# line, torch.randn(1, *input_size), builds a valid input; its Input line is the family's (card_input).
AUDIO_DATA_CFG = {"sample_rate": 16000, "input_size": (16000,),
                  "card_input": "mono waveform (batch, samples) at {cfg[sample_rate]} Hz, float in [-1, 1]"}


def hf_to_zoo_key(key: str) -> str:
    """Map one transformers ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2Model`` key to ours.

    The fused attention projection (``q/k/v_proj`` -> ``qkv``) cannot be a key rename; :func:`from_transformers`
    concatenates those, and this map names them ``...mixer.q_proj.weight`` for it to find.
    """
    key = key.removeprefix("wav2vec2.")
    rules = (
        ("feature_extractor.conv_layers.", "feature_extractor.conv_layers."),
        ("feature_projection.layer_norm.", "layer_norm."),
        ("feature_projection.projection.", "post_extract_proj."),
        ("masked_spec_embed", "mask_emb"),
        ("encoder.pos_conv_embed.conv.", "pos_conv.conv."),
        ("encoder.layer_norm.", "encoder_norm."),
        ("quantizer.", "quantizer."),
        ("project_hid.", "final_proj."),
        ("project_q.", "project_q."),
    )
    for old, new in rules:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    else:
        if key.startswith("encoder.layers."):
            _, _, i, rest = key.split(".", 3)
            rest = (rest.replace("attention.out_proj.", "mixer.proj.").replace("attention.", "mixer.")
                    .replace("feed_forward.intermediate_dense.", "mlp.fc1.")
                    .replace("feed_forward.output_dense.", "mlp.fc2.")
                    .replace("final_layer_norm.", "norm2.").replace("layer_norm.", "norm1."))  # fmt: skip
            key = f"backbone.blocks.{i}.{rest}"
    key = key.replace(".layer_norm.", ".norm.")  # the CNN's per-layer norms
    key = key.replace("conv.weight_g", "conv.parametrizations.weight.original0")
    key = key.replace("conv.weight_v", "conv.parametrizations.weight.original1")
    return key


def fairseq_to_zoo_key(key: str) -> str:
    """Map one fairseq ``Wav2Vec2Model`` state-dict key to ours (attention is fused like transformers')."""
    rules = (
        ("encoder.pos_conv.0.", "pos_conv.conv."),
        ("encoder.layer_norm.", "encoder_norm."),
        ("quantizer.vars", "quantizer.codevectors"),
    )
    for old, new in rules:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    else:
        if key.startswith("encoder.layers."):
            _, _, i, rest = key.split(".", 3)
            rest = (rest.replace("self_attn.out_proj.", "mixer.proj.").replace("self_attn.", "mixer.")
                    .replace("self_attn_layer_norm.", "norm1.").replace("final_layer_norm.", "norm2.")
                    .replace("fc1.", "mlp.fc1.").replace("fc2.", "mlp.fc2."))  # fmt: skip
            key = f"backbone.blocks.{i}.{rest}"
        elif key.startswith("feature_extractor.conv_layers."):
            # fairseq: conv_layers.{i}.0 = conv, .2 = GroupNorm (default mode) or .2.1 = LayerNorm (layer_norm mode)
            _, _, i, rest = key.split(".", 3)
            if rest.startswith("0."):
                rest = "conv." + rest[2:]
            elif rest.startswith("2."):
                rest = "norm." + rest.split(".")[-1]
            key = f"feature_extractor.conv_layers.{i}.{rest}"
    key = key.replace("conv.weight_g", "conv.parametrizations.weight.original0")
    key = key.replace("conv.weight_v", "conv.parametrizations.weight.original1")
    return key


#: The wav2vec 2.0 family; SpeechPretraining trains and evaluates it (validation loss).
FAMILY = register_family(ModelFamily(
    name="wav2vec2", norm_sites=NORM_SITES, task="derf_zoo.tasks.SpeechPretraining",
    task_type="feature-extraction", key_maps={"transformers": hf_to_zoo_key, "fairseq": fairseq_to_zoo_key},
))  # fmt: skip


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


class Wav2Vec2(nn.Module, HubMixin):
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
        for name, value in (("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads),
                            ("ffn_dim", ffn_dim), ("final_dim", final_dim), ("num_negatives", num_negatives)):
            check_int(name, value, minimum=1)  # fmt: skip
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

        sites = resolve_norm_sites(norm, NORM_SITES)
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
        self.backbone = Transformer(
            embed_dim, depth, num_heads=num_heads, mlp_ratio=ffn_dim / embed_dim, qkv_bias=True,
            norm={"attn": sites["attn"], "mlp": sites["mlp"], "final": sites["encoder"]}, norm_eps=norm_eps,
            norm_first=norm_first, layer_drop=layer_drop, attn_drop=attention_dropout, proj_drop=dropout,
            final_norm=False,
        )  # fmt: skip
        for block in self.backbone.blocks:  # fairseq: activation_dropout inside the MLP, dropout after it
            block.mlp.drop1.p = activation_dropout
        self.encoder_norm = tag_site(sites["encoder"](embed_dim, eps=norm_eps), "encoder")

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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the Transformer blocks' activations in the backward pass instead of storing them (timm's switch).

        Args:
            enable: turn checkpointing on (True) or off (False); the CNN feature extractor is never checkpointed.
        """
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters the optimizer should not decay (timm's convention, read by
        :func:`derf_zoo.tasks.optim.param_groups`, which also spares every 1-D parameter).

        Returns:
            ``{"mask_emb"}``: the learned mask embedding, a single vector that replaces masked frames.
        """
        return {"mask_emb"}

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


# ---- entry points ---------------------------------------------------------------------------------------

_BASE = {"extractor_mode": "group", "embed_dim": 768, "depth": 12, "num_heads": 12, "ffn_dim": 3072,
         "final_dim": 256, "layer_drop": 0.05, "dropout": 0.1, "attention_dropout": 0.1, "norm_first": False,
         "latent_temp": (2.0, 0.5, 0.999995)}  # fmt: skip
# fairseq's wav2vec2_large_librivox / the Derf paper's Large: layer-norm CNN with bias, pre-norm, final_dim 768.
_LARGE = {"extractor_mode": "layer", "conv_bias": True, "embed_dim": 1024, "depth": 24, "num_heads": 16,
          "ffn_dim": 4096, "final_dim": 768, "layer_drop": 0.2, "dropout": 0.1, "attention_dropout": 0.1,
          "norm_first": True, "latent_temp": (2.0, 0.1, 0.999995)}  # fmt: skip
# The demo's model: 20 ms frames as Base (same strides) from a narrow CNN, 2 blocks of width 96.
_TINY = {"conv_dim": (64,) * 7, "extractor_mode": "group", "embed_dim": 96, "depth": 2, "num_heads": 4,
         "ffn_dim": 192, "final_dim": 64, "num_codevectors": 32, "num_negatives": 20, "pos_conv_kernel": 32,
         "pos_conv_groups": 4, "layer_drop": 0.0, "norm_first": True}  # fmt: skip


def _build(name: str, args: dict[str, Any], pretrained: bool, kwargs: dict[str, Any]) -> Wav2Vec2:
    return build_model(Wav2Vec2, name, pretrained=pretrained, model_args=args, data_cfg=AUDIO_DATA_CFG, **kwargs)


@register_model(family="wav2vec2")
def wav2vec2_base(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base as fairseq's ``wav2vec2_base_librispeech``: group-norm CNN, post-norm blocks; any ``norm=``."""
    return _build("wav2vec2_base", dict(_BASE), pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_large(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large: layer-norm CNN, pre-norm blocks, final_dim 768; any ``norm=``."""
    return _build("wav2vec2_large", dict(_LARGE), pretrained, kwargs)


def _paper(name: str, size: str, norm: str, pretrained: bool, kwargs: dict[str, Any]) -> Wav2Vec2:
    """The Derf paper's rows (§3.3): fairseq's config with ``layer_norm_first: true`` for Base too, the norm in
    every slot site (Derf and DyT with alpha 0.5). The official Large yaml (zlab-princeton/Derf) sets no
    ``extractor_mode`` or ``conv_bias``, so its CNN is fairseq's default, Base's group-norm CNN without conv bias,
    not the LV-60 layer-norm CNN that ``wav2vec2_large`` builds."""
    args = {**(_BASE if size == "base" else _LARGE), "norm_first": True, "norm": norm}
    if size == "large":
        args.update(extractor_mode="group", conv_bias=False)
    return _build(name, args, pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_derf_librispeech.yaml",
                conversion="recipes/wav2vec2/wav2vec2_base_derf_from_hf_librispeech.yaml")
def wav2vec2_base_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, Derf (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_base_derf", "base", "derf", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_dyt_librispeech.yaml")
def wav2vec2_base_dyt(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, DyT (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_base_dyt", "base", "dyt", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_ln_librispeech.yaml")
def wav2vec2_base_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, LayerNorm in every slot site: the paper's row."""
    return _paper("wav2vec2_base_ln", "base", "layernorm", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_derf_librispeech.yaml")
def wav2vec2_large_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, Derf (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_large_derf", "large", "derf", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_dyt_librispeech.yaml")
def wav2vec2_large_dyt(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, DyT (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_large_dyt", "large", "dyt", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_ln_librispeech.yaml")
def wav2vec2_large_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, LayerNorm in every slot site: the paper's row."""
    return _paper("wav2vec2_large_ln", "large", "layernorm", pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """The demo's wav2vec 2.0 (~0.3M parameters): Base's 20 ms frames from a 64-channel CNN, 2 pre-norm blocks of
    width 96, 2 x 32 codevectors, 20 negatives; any ``norm=``. Pretrains in well under a minute on 2 CPU cores on
    ~25 s of speech."""
    return _build("wav2vec2_tiny", dict(_TINY), pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """:func:`wav2vec2_tiny` with Derf (alpha 0.5) in every slot site: the demo's model."""
    return _build("wav2vec2_tiny_derf", {**_TINY, "norm": "derf"}, pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """:func:`wav2vec2_tiny` with LayerNorm in every slot site: the demo's baseline."""
    return _build("wav2vec2_tiny_ln", {**_TINY, "norm": "layernorm"}, pretrained, kwargs)


default_cfgs: dict[str, dict] = {}


# ---- foreign weights ------------------------------------------------------------------------------------


def _args_from_hf_config(config: Any) -> dict[str, Any]:
    if getattr(config, "hidden_act", "gelu") != "gelu" or getattr(config, "feat_extract_activation", "gelu") != "gelu":
        raise ValueError("from_transformers: only GELU activations are supported (wav2vec 2.0's).")
    if getattr(config, "add_adapter", False):
        raise ValueError("from_transformers: adapters (add_adapter=True) are not supported.")
    return {
        "conv_dim": tuple(config.conv_dim), "conv_kernel": tuple(config.conv_kernel),
        "conv_stride": tuple(config.conv_stride), "extractor_mode": config.feat_extract_norm,
        "conv_bias": bool(config.conv_bias), "embed_dim": config.hidden_size, "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads, "ffn_dim": config.intermediate_size, "norm": "layernorm",
        "norm_eps": config.layer_norm_eps, "norm_first": bool(config.do_stable_layer_norm),
        "layer_drop": config.layerdrop, "dropout": config.hidden_dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "dropout_input": config.feat_proj_dropout, "dropout_features": config.feat_quantizer_dropout,
        "feature_grad_mult": 1.0, "pos_conv_kernel": config.num_conv_pos_embeddings,
        "pos_conv_groups": config.num_conv_pos_embedding_groups, "final_dim": config.proj_codevector_dim,
        "num_codevector_groups": config.num_codevector_groups,
        "num_codevectors": config.num_codevectors_per_group, "codevector_dim": config.codevector_dim,
        "num_negatives": config.num_negatives, "logit_temp": config.contrastive_logits_temperature,
        "mask_prob": config.mask_time_prob, "mask_length": config.mask_time_length,
        "min_masks": config.mask_time_min_masks, "diversity_weight": config.diversity_loss_weight,
        "feature_penalty_weight": 0.0, "feature_projection": True,  # transformers always projects the features
    }  # fmt: skip


def _fuse_qkv(sd: dict[str, Tensor], prefix: str = "backbone.blocks.") -> dict[str, Tensor]:
    """Concatenate separate ``mixer.{q,k,v}_proj`` weights into our fused ``mixer.qkv``."""
    out = {}
    for key, value in sd.items():
        if ".mixer.q_proj." in key or ".mixer.k_proj." in key or ".mixer.v_proj." in key:
            if ".mixer.q_proj." in key:
                kind = key.rsplit(".", 1)[1]
                base = key.split(".mixer.q_proj.")[0] + ".mixer."
                out[f"{base}qkv.{kind}"] = torch.cat([sd[f"{base}{p}_proj.{kind}"] for p in "qkv"], dim=0)
            continue
        out[key] = value
    return out


def _load_mapped(model: Wav2Vec2, sd: Mapping[str, Tensor], key_map, source: str) -> Wav2Vec2:
    mapped = _fuse_qkv({key_map(k): v for k, v in sd.items()})
    if model.pretraining:  # transformers keeps the temperature outside the state dict
        mapped.setdefault("quantizer.temperature", model.quantizer.temperature.clone())
    if "quantizer.codevectors" in mapped and model.pretraining:
        mapped["quantizer.codevectors"] = mapped["quantizer.codevectors"].reshape(model.quantizer.codevectors.shape)
    if "mask_emb" not in mapped:  # transformers drops the mask embedding when its config masks nothing
        mapped["mask_emb"] = model.mask_emb.detach().clone()
    load_into(model, mapped, source=source)
    return model


def from_transformers(model_or_state_dict: nn.Module | Mapping[str, Tensor], config: Any = None,
                      **overrides: Any) -> Wav2Vec2:  # fmt: skip
    """Import transformers' ``Wav2Vec2ForPreTraining`` (with the head) or ``Wav2Vec2Model`` (encoder only).

    Args:
        model_or_state_dict: the HF model, or its state dict (then ``config`` is required).
        config: the ``Wav2Vec2Config`` (taken from the model when one is given).
        **overrides: model arguments to change (``feature_penalty_weight=10.0``, ``feature_grad_mult=0.1`` to
            continue pretraining the fairseq way; by default the import reproduces HF's loss: weight 0, mult 1).
            Masking comes from the config, whose defaults are transformers' *fine-tuning* ones
            (``mask_time_prob=0.05``): pass ``mask_prob=0.65`` to pretrain with sampled masks.

    Returns:
        A :class:`Wav2Vec2` in evaluation mode with LayerNorm in every slot site and the same outputs.
    """
    if isinstance(model_or_state_dict, nn.Module):
        config = config or model_or_state_dict.config
        sd = model_or_state_dict.state_dict()
    else:
        sd = dict(model_or_state_dict)
    if config is None:
        raise ValueError("from_transformers: pass config= (a Wav2Vec2Config) with a state dict.")
    pretraining = any(k.startswith("quantizer.") for k in sd)
    args = {**_args_from_hf_config(config), "pretraining": pretraining, **overrides}
    model = Wav2Vec2(**args)
    model.model_args = args
    sd = {k: v for k, v in sd.items() if not k.startswith(("lm_head.", "projector.", "classifier."))}
    return _load_mapped(model, sd, hf_to_zoo_key, "transformers Wav2Vec2 weights").eval()


def from_fairseq(state_dict: Mapping[str, Tensor], **model_args: Any) -> Wav2Vec2:
    """Import a fairseq ``Wav2Vec2Model`` state dict (already extracted; fairseq checkpoints are pickles and are
    never unpickled here) into a :class:`Wav2Vec2` built from ``model_args`` (e.g. those of ``wav2vec2_base``:
    the config is not in a state dict)."""
    model = Wav2Vec2(**model_args)
    return _load_mapped(model, state_dict, fairseq_to_zoo_key, "fairseq wav2vec 2.0 state dict").eval()


def to_fairseq(model: Wav2Vec2) -> dict[str, Tensor]:
    """Our state dict in fairseq's ``Wav2Vec2Model`` layout (the inverse of :func:`from_fairseq`)."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "quantizer.temperature":
            continue
        if key.startswith("backbone.blocks."):
            _, _, i, rest = key.split(".", 3)
            if rest.startswith("mixer.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"encoder.layers.{i}.self_attn.{name}_proj.{kind}"] = part
                continue
            rest = (rest.replace("mixer.proj.", "self_attn.out_proj.").replace("norm1.", "self_attn_layer_norm.")
                    .replace("norm2.", "final_layer_norm.").replace("mlp.fc1.", "fc1.").replace("mlp.fc2.", "fc2."))
            out[f"encoder.layers.{i}.{rest}"] = value
        elif key.startswith("feature_extractor.conv_layers."):
            _, _, i, rest = key.split(".", 3)
            layer = model.feature_extractor.conv_layers[int(i)]
            if rest.startswith("conv."):
                out[f"feature_extractor.conv_layers.{i}.0.{rest[5:]}"] = value
            else:
                site = "2" if layer.norm_kind == "group" else "2.1"
                out[f"feature_extractor.conv_layers.{i}.{site}.{rest.split('.')[-1]}"] = value
        elif key.startswith("pos_conv.conv."):
            rest = key[len("pos_conv.conv."):]
            rest = rest.replace("parametrizations.weight.original0", "weight_g")
            out["encoder.pos_conv.0." + rest.replace("parametrizations.weight.original1", "weight_v")] = value
        elif key.startswith("encoder_norm."):
            out["encoder.layer_norm." + key[len("encoder_norm."):]] = value
        elif key == "quantizer.codevectors":
            out["quantizer.vars"] = value.reshape(1, -1, value.shape[-1])
        else:
            out[key] = value
    return out
