"""The Caduceus network: its modules, forward pass and norm sites (the family's doc: ``derf_zoo.models.caduceus``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo._validate import check_positive
from derf_zoo.backbone import Transformer
from derf_zoo.data.dna import COMPLEMENT_IDS, PAD_VOCAB_SIZE_MULTIPLE, VOCAB_SIZE, alphabet_prior, padded_complement_ids
from derf_zoo.layers import init_weights
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.models.caduceus.bimamba import BiMamba
from derf_zoo.models.caduceus.rcps import RCPSEmbedding, RCPSWrapper, _reverse_complement_with_map, rcps_lm_logits
from derf_zoo.models.caduceus.selective_scan import DEFAULT_CHUNK_SIZE
from derf_zoo.norms.registry import NormSpec
from derf_zoo.norms.sites import tag_site

__all__ = [
    "DNA_COMPLEMENT",
    "DNA_VOCAB_SIZE",
    "NORM_SITES",
    "PAD_VOCAB_SIZE_MULTIPLE",
    "Caduceus",
    "dna_complement_map",
]


#: Complement of each id of the HyenaDNA/Caduceus character tokenizer (``[CLS]`` 0 ... ``[UNK]`` 6 map to
#: themselves, A7 <-> T10, C8 <-> G9, N11 -> N11): the tokenizer's own table, one definition for data and model.
DNA_COMPLEMENT = tuple(COMPLEMENT_IDS.tolist())
#: The tokenizer's vocabulary (12); the public checkpoints pad it to a multiple of PAD_VOCAB_SIZE_MULTIPLE (8).
DNA_VOCAB_SIZE = VOCAB_SIZE
#: The complement permutation over a padded vocabulary (the data module's, under the name this family exports).
dna_complement_map = padded_complement_ids

#: Norm sites: before each BiMamba (the backbone's pre-mixer site, ``attn``) and after the last block.
NORM_SITES = ("attn", "final")


def _rcps_norm(factory: Any, site: str) -> Any:
    """A norm-site factory whose layer normalises each half (the RC half flipped back) with one shared norm."""

    def build(num_features: int, **kwargs: Any) -> nn.Module:
        return RCPSWrapper(tag_site(factory(num_features // 2, **kwargs), site))

    return build


class Caduceus(ZooModel):
    """Caduceus masked language model over DNA tokens: ``model(input_ids) -> logits (B, L, vocab)``.

    Args:
        vocab_size: tokenizer vocabulary (12); the embedding is padded to ``pad_vocab_size_multiple``.
        d_model: width (of one half for ``rcps=True``).
        n_layer: blocks.
        d_state: SSM state size.
        d_conv: causal convolution width.
        expand: Mamba inner width over ``d_model``.
        rcps: Caduceus-PS (RC-equivariant parameter sharing) instead of Caduceus-Ph.
        norm: norm spec for every site, or per site (``attn``, ``final``); default RMSNorm.
        norm_eps: eps of normalising layers (the reference's 1e-5).
        bidirectional_weight_tie: BiMamba shares in/out projections between directions.
        pad_vocab_size_multiple: pad the embedding rows to a multiple of this.
        rc_average: in evaluation mode, return the average of the logits and the reverse complement's logits
            mapped back (the Caduceus-Ph inference of the paper; a PS model is equivariant already).
        rcps_swap_halves: reproduce the reference's fused add+norm Caduceus-PS block, which swaps the two halves
            of the residual stream before each block (set by :func:`from_caduceus` for checkpoints in that layout).
        chunk_size: chunk length of the selective scan.
        scan: ``"auto"``, ``"chunked"`` or ``"reference"`` (see :class:`~derf_zoo.models.caduceus.mamba.Mamba`).
        embed_init_std: std of the token embedding's normal init, which the tied LM head shares (reference 0.02).
            The head's largest logit at init is about ``d_model * std * 0.8``: 1.9 nats at width 118, 0.26 at the
            nano width 16, where a point-wise final norm then traps the model (issue 18); the nano size uses 0.32.
        site_alpha: default ``alpha_init`` per norm site for point-wise norms whose spec sets none
            (``{"final": 0.1}``); see :func:`~derf_zoo.norms.registry.resolve_norm_sites`.
        head_bias: a learnable logit bias after the tied head, started at the data's prior
            (:func:`~derf_zoo.data.dna.alphabet_prior`); see :class:`~derf_zoo.models.hyenadna.HyenaDNA` for why a
            point-wise final norm at small width needs it. Caduceus-PS uses its complement-symmetric part, so the
            model stays RC-equivariant. Not in the reference's layout.
    """

    norm_sites = NORM_SITES

    def __init__(
        self,
        vocab_size: int = DNA_VOCAB_SIZE,
        d_model: int = 118,
        n_layer: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        rcps: bool = False,
        norm: NormSpec | Mapping[str, NormSpec] = "rmsnorm",
        norm_eps: float = 1e-5,
        bidirectional_weight_tie: bool = True,
        pad_vocab_size_multiple: int = PAD_VOCAB_SIZE_MULTIPLE,
        rc_average: bool = False,
        rcps_swap_halves: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scan: str = "auto",
        embed_init_std: float = 0.02,
        site_alpha: Mapping[str, float] | None = None,
        head_bias: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, d_model=d_model, n_layer=n_layer,
                    pad_vocab_size_multiple=pad_vocab_size_multiple)  # fmt: skip
        if rcps_swap_halves and not rcps:
            raise ValueError("rcps_swap_halves only applies to Caduceus-PS (rcps=True).")
        self.embed_init_std = check_positive("embed_init_std", embed_init_std)
        self.vocab_size = vocab_size
        self.padded_vocab_size = -(-vocab_size // pad_vocab_size_multiple) * pad_vocab_size_multiple
        self.d_model, self.n_layer, self.rcps = d_model, n_layer, rcps
        self.rc_average, self.rcps_swap_halves = rc_average, rcps_swap_halves
        self.num_features = self.embed_dim = 2 * d_model if rcps else d_model
        self.register_buffer("complement_map", dna_complement_map(self.padded_vocab_size), persistent=False)
        if rcps:
            self.word_embeddings = RCPSEmbedding(self.padded_vocab_size, d_model, self.complement_map)
        else:
            self.word_embeddings = nn.Embedding(self.padded_vocab_size, d_model)
        sites = self.resolve_norms(norm, site_alpha)
        mixer_args = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "weight_tie": bidirectional_weight_tie,
                      "chunk_size": chunk_size, "scan": scan}  # fmt: skip

        def mixer(dim: int, layer_index: int) -> nn.Module:
            return RCPSWrapper(BiMamba(dim // 2, **mixer_args)) if rcps else BiMamba(dim, **mixer_args)

        block_norms = {s: _rcps_norm(f, s) for s, f in sites.items()} if rcps else dict(sites)
        # Mixer-only blocks: the backbone's sites are exactly Caduceus's (attn, final).
        self.backbone = Transformer(self.num_features, n_layer, mlp_hidden_dim=0, norm=block_norms, norm_eps=norm_eps,
                                    mixer=mixer)  # fmt: skip
        self.head_bias = nn.Parameter(torch.empty(self.padded_vocab_size)) if head_bias else None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference's init: Mamba's own (see :class:`~derf_zoo.models.caduceus.mamba.Mamba`), embedding N(0, 0.02)
        (``embed_init_std``),
        and every ``out_proj`` (both directions when ``bidirectional_weight_tie=False``) re-drawn with PyTorch's
        default and scaled by ``1/sqrt(n_layer)`` (GPT-2's residual scaling, ``rescale_prenorm_residual`` of the
        reference's ``_init_weights``, which matches every parameter named ``out_proj.weight``)."""

        def default(module: nn.Module) -> None:
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.embed_init_std)

        init_weights(self, default)
        for module in self.modules():
            if isinstance(module, BiMamba):
                for mamba in (module.mamba_fwd, module.mamba_rev):
                    if mamba.out_proj is not None:  # a weight-tied reverse Mamba borrows the forward out_proj
                        nn.init.kaiming_uniform_(mamba.out_proj.weight, a=math.sqrt(5))
                        mamba.out_proj.weight /= math.sqrt(self.n_layer)
        if self.head_bias is not None:  # no random draw: the weights above are those of a model without the bias
            self.head_bias.copy_(alphabet_prior(self.padded_vocab_size))

    @property
    def embedding_weight(self) -> Tensor:
        """The (padded vocab, d_model) token table, which the LM head shares."""
        return self.word_embeddings.weight

    def forward_features(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> hidden states after the final norm (B, L, ``num_features``)."""
        if input_ids.dim() != 2:
            raise ValueError(f"Caduceus expects token ids of shape (B, L), got {tuple(input_ids.shape)}.")
        x = self.word_embeddings(input_ids)
        return self.backbone(x, before_block=self._swap_halves if self.rcps_swap_halves else None)

    def _swap_halves(self, x: Tensor) -> Tensor:
        """The fused reference Caduceus-PS block's first step: the residual's two halves swapped."""
        return torch.cat([x[..., self.d_model :], x[..., : self.d_model]], dim=-1)

    def forward_head(self, hidden: Tensor) -> Tensor:
        """Hidden states -> logits over the padded vocabulary (tied to the embedding, plus ``head_bias`` if any)."""
        bias = self.head_bias
        if self.rcps:
            logits = rcps_lm_logits(hidden, self.embedding_weight, self.complement_map)
            # equivariance needs bias[complement] == bias: only the bias's complement-symmetric part is used
            return logits if bias is None else logits + (bias + bias[self.complement_map]) / 2
        return nn.functional.linear(hidden, self.embedding_weight, bias)

    def rc_averaged_logits(self, input_ids: Tensor) -> Tensor:
        """Mean of the logits and of the reverse complement's logits mapped back (flipped, complement-permuted)."""
        logits = self.forward_head(self.forward_features(input_ids))
        rc_ids = _reverse_complement_with_map(input_ids, self.complement_map)  # every padded-vocab id
        rc_logits = self.forward_head(self.forward_features(rc_ids)).flip(1)[..., self.complement_map]
        return (logits + rc_logits) / 2

    def forward(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> logits (B, L, padded vocab); RC-averaged in evaluation when ``rc_average``."""
        if self.rc_average and not self.training:
            return self.rc_averaged_logits(input_ids)
        return self.forward_head(self.forward_features(input_ids))
