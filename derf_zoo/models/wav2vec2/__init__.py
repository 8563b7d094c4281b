"""wav2vec 2.0 (Baevski et al., 2020) on the shared backbone: self-supervised speech pretraining with a norm slot.

Architecture and loss follow fairseq's ``wav2vec2.py`` and ``wav2vec_criterion.py`` (the code the Derf paper
trains, its §3.3): the conv feature encoder (:mod:`derf_zoo.models.wav2vec2.conv_feature_encoder`), the feature penalty
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
and reports the hard one as ``code_perplexity``. :func:`from_transformers` imports its weights and
:func:`to_transformers` exports ours (both through :data:`TRANSFORMERS_LAYOUT`'s table, the family's registered
``"transformers"`` layout; fairseq's is ``"fairseq"``).

Public fairseq checkpoints are pickles; they are never unpickled here. Extract the model's state dict yourself
(``torch.load(path, weights_only=True)`` works on fairseq checkpoints that hold only tensors; otherwise load it in
a fairseq environment and save ``state_dict()`` as safetensors) and pass it to :func:`from_fairseq`.
"""

from __future__ import annotations

from derf_zoo.models.wav2vec2.entrypoints import (
    AUDIO_DATA_CFG,
    FAMILY,
    wav2vec2_base,
    wav2vec2_base_derf,
    wav2vec2_base_dyt,
    wav2vec2_base_ln,
    wav2vec2_large,
    wav2vec2_large_derf,
    wav2vec2_large_dyt,
    wav2vec2_large_ln,
    wav2vec2_tiny,
    wav2vec2_tiny_derf,
    wav2vec2_tiny_ln,
)
from derf_zoo.models.wav2vec2.layouts import (
    FAIRSEQ_LAYOUT,
    TRANSFORMERS_LAYOUT,
    fairseq_layout,
    from_fairseq,
    from_transformers,
    to_fairseq,
    to_transformers,
    to_transformers_state_dict,
    transformers_layout,
)
from derf_zoo.models.wav2vec2.model import (
    NORM_SITES,
    Wav2Vec2,
    Wav2Vec2Output,
)

__all__ = [
    "AUDIO_DATA_CFG",
    "FAIRSEQ_LAYOUT",
    "FAMILY",
    "NORM_SITES",
    "TRANSFORMERS_LAYOUT",
    "Wav2Vec2",
    "Wav2Vec2Output",
    "fairseq_layout",
    "from_fairseq",
    "from_transformers",
    "to_fairseq",
    "to_transformers",
    "to_transformers_state_dict",
    "transformers_layout",
    "wav2vec2_base",
    "wav2vec2_base_derf",
    "wav2vec2_base_dyt",
    "wav2vec2_base_ln",
    "wav2vec2_large",
    "wav2vec2_large_derf",
    "wav2vec2_large_dyt",
    "wav2vec2_large_ln",
    "wav2vec2_tiny",
    "wav2vec2_tiny_derf",
    "wav2vec2_tiny_ln",
]
