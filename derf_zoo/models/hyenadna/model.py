"""The HyenaDNA network: its modules, forward pass and norm sites (the family's doc: ``derf_zoo.models.hyenadna``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from derf_zoo._validate import check_positive
from derf_zoo.backbone import Transformer
from derf_zoo.data.dna import PAD_VOCAB_SIZE_MULTIPLE, VOCAB_SIZE, alphabet_prior
from derf_zoo.layers import gpt2_normal, init_weights, tanh_gelu
from derf_zoo.layers.mixers import MixerFactory, MixerSpec, get_mixer
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.models._context import check_context
from derf_zoo.models.hyenadna.hyena import HyenaOperator  # noqa: F401  (registers the "hyena" mixer)
from derf_zoo.norms.registry import NormSpec

__all__ = ["DNA_VOCAB_SIZE", "HYENADNA_SITES", "HyenaDNA"]


#: The HyenaDNA norm sites: before the Hyena mixer, before the MLP, after the last block.
HYENADNA_SITES = ("attn", "mlp", "final")

#: The character vocabulary of the public checkpoints ([CLS] [SEP] [BOS] [MASK] [PAD] [RESERVED] [UNK] A C G T N).
DNA_VOCAB_SIZE = VOCAB_SIZE


class HyenaDNA(ZooModel):
    """Causal DNA LM: ``forward(input_ids) -> logits (B, L, padded vocab)``.

    Args:
        vocab_size: tokens of the tokenizer (12 for the character vocabulary).
        pad_vocab_size_multiple: the embedding and head have ``vocab_size`` rounded up to a multiple of this
            (8 in the public checkpoints: 16 rows).
        d_model: width.
        n_layer: blocks.
        d_inner: MLP width (default ``4 * d_model``).
        max_seq_len: longest input (the implicit filter's length; the public checkpoints use the training
            length + 2, e.g. 1026).
        mixer: mixer spec; a Hyena spec gets ``l_max=max_seq_len`` unless it sets it.
        norm: norm spec for every site or per site (``attn``, ``mlp``, ``final``).
        norm_eps: eps of normalizing layers (reference 1e-5).
        embed_dropout: dropout after the embedding (reference 0.1).
        embed_init_std: std of the embedding's normal init, which is also the tied head's (reference 0.02). The
            head's largest logit at init is about ``d_model * std * 0.8``: 4 nats at the paper's width 256 but
            0.5 at width 32, where a point-wise final norm then traps the model (issue 18); the nano sizes use
            0.32.
        site_alpha: default ``alpha_init`` per norm site for point-wise norms whose spec sets none
            (``{"final": 0.1}``); see :func:`~derf_zoo.norms.registry.resolve_norm_sites`.
        head_bias: a learnable logit bias after the tied head (the reference has none), started at the data's
            prior (:func:`~derf_zoo.data.dna.alphabet_prior`: 0 for the bases, -10 for the 11 ids a genome window
            never holds). Without it the first steps' cheapest gain is to make those ids improbable, which a tied head
            without bias can only do through one constant direction of the residual stream; at width 32 that
            direction grows until a point-wise final norm saturates and passes no gradient (issue 18: 2 of 5
            seeds of the nano Derf recipe trapped without it, none with it). Not in the reference's layout.
    """

    norm_sites = HYENADNA_SITES

    def __init__(
        self,
        vocab_size: int = DNA_VOCAB_SIZE,
        pad_vocab_size_multiple: int = PAD_VOCAB_SIZE_MULTIPLE,
        d_model: int = 128,
        n_layer: int = 2,
        d_inner: int | None = None,
        max_seq_len: int = 1026,
        mixer: MixerSpec = "hyena(order=2, filter_order=64)",
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-5,
        embed_dropout: float = 0.1,
        embed_init_std: float = 0.02,
        site_alpha: Mapping[str, float] | None = None,
        head_bias: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, pad_vocab_size_multiple=pad_vocab_size_multiple, d_model=d_model,
                    n_layer=n_layer, max_seq_len=max_seq_len)  # fmt: skip
        d_inner = 4 * d_model if d_inner is None else d_inner
        check_sizes(d_inner=d_inner)
        self.embed_init_std = check_positive("embed_init_std", embed_init_std)
        self.num_tokens = vocab_size
        self.vocab_size = math.ceil(vocab_size / pad_vocab_size_multiple) * pad_vocab_size_multiple
        self.num_features = self.d_model = d_model
        self.max_seq_len = max_seq_len
        factory = get_mixer(mixer)
        if isinstance(factory, MixerFactory) and "l_max" in factory.entry.keywords and "l_max" not in factory.kwargs:
            factory = MixerFactory(factory.name, {**factory.kwargs, "l_max": max_seq_len})
        self.embeddings = nn.Embedding(self.vocab_size, d_model)
        self.embed_drop = nn.Dropout(embed_dropout)
        sites = self.resolve_norms(norm, site_alpha)
        self.backbone = Transformer(d_model, n_layer, mlp_hidden_dim=d_inner, norm=sites, norm_eps=norm_eps,
                                    act_layer=tanh_gelu, mixer=factory)  # fmt: skip
        self.head_bias = nn.Parameter(torch.empty(self.vocab_size)) if head_bias else None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference's GPT-2 init: normal(0.02) linears (the filter MLP's too) and embedding (normal
        ``embed_init_std``), zero biases, and the residual outputs (``out_proj``, ``fc2``) at std 0.02 / sqrt(2
        n_layer). The short convolution keeps PyTorch's default and the filter's skip ``bias`` its normal draw, as in
        the reference."""
        init_weights(self, gpt2_normal)
        # Re-drawn at embed_init_std after the family init (one extra draw): the released nano weights start from
        # this order, so changing it would stop `derf-zoo demo dna` from reproducing their cards.
        nn.init.normal_(self.embeddings.weight, std=self.embed_init_std)
        std = 0.02 / math.sqrt(2 * len(self.backbone.blocks))
        for block in self.backbone.blocks:
            out_proj = getattr(block.mixer, "out_proj", None)
            if isinstance(out_proj, nn.Linear):
                nn.init.normal_(out_proj.weight, std=std)
            nn.init.normal_(block.mlp.fc2.weight, std=std)
        if self.head_bias is not None:  # no random draw: the weights above are those of a model without the bias
            self.head_bias.copy_(alphabet_prior(self.vocab_size))

    @property
    def card_example_length(self) -> int:
        """The window of the model card's usage example: 256 tokens, fewer when ``max_seq_len`` is shorter."""
        return min(self.max_seq_len, 256)

    def _check_input(self, input_ids: Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            raise ValueError(f"HyenaDNA expects token ids of shape (batch, length) and an integer dtype, got "
                             f"{tuple(input_ids.shape)} {input_ids.dtype}.")  # fmt: skip
        check_context(self, input_ids.shape[1])

    def forward_features(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> hidden states (B, L, d_model) after the final norm."""
        self._check_input(input_ids)
        return self.backbone(self.embed_drop(self.embeddings(input_ids)))

    def forward_head(self, hidden: Tensor) -> Tensor:
        """Hidden states -> logits over the padded vocabulary, with the tied head (and ``head_bias``, if any)."""
        return F.linear(hidden, self.embeddings.weight, self.head_bias)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(input_ids))

    def get_output_embeddings(self) -> nn.Embedding:
        """The head's weight is the embedding's (one parameter)."""
        return self.embeddings
