"""The RCPS layers against their definitions: the embedding's two halves, the wrapper's flips, the LM head's vote
for the complement, and reverse-complement equivariance of each layer alone."""

import pytest
import torch
from torch import nn

from derf_zoo.models.caduceus.rcps import RCPSEmbedding, RCPSWrapper, rcps_lm_logits

# A toy vocabulary: 0 pad (its own complement), 1..4 = A C G T (A<->T, C<->G).
COMPLEMENT = torch.tensor([0, 4, 3, 2, 1])


def reverse_complement(ids: torch.Tensor) -> torch.Tensor:
    """Written out: read the sequence backwards, complementing each token."""
    return torch.stack([torch.stack([COMPLEMENT[t] for t in reversed(row)]) for row in ids])


def flip_rc(hidden: torch.Tensor) -> torch.Tensor:
    """How reverse-complementing a sequence acts on an RC-equivariant hidden state: flip length and channels."""
    return hidden.flip(dims=(-2, -1))


@pytest.fixture
def ids():
    torch.manual_seed(0)
    return torch.randint(1, 5, (2, 7))


def test_embedding_is_the_forward_half_and_the_flipped_reverse_complement_half(ids):
    emb = RCPSEmbedding(5, 3, COMPLEMENT)
    out = emb(ids)
    table = emb.embedding.weight
    for b in range(2):
        for t in range(7):
            # the rc strand, flipped back to forward order: at position t it holds the complement of ids[t]
            rc_token = COMPLEMENT[ids[b, t]]
            torch.testing.assert_close(out[b, t, :3], table[ids[b, t]])
            torch.testing.assert_close(out[b, t, 3:], table[rc_token].flip(0))
    torch.testing.assert_close(emb(reverse_complement(ids)), flip_rc(out))  # equivariant


def test_wrapper_applies_the_module_to_both_strands_and_commutes_with_the_flip():
    torch.manual_seed(1)
    inner = nn.Sequential(nn.Linear(4, 4), nn.GELU())
    wrapper = RCPSWrapper(inner)
    x = torch.randn(2, 5, 8)
    out = wrapper(x)
    torch.testing.assert_close(out[..., :4], inner(x[..., :4]))
    torch.testing.assert_close(out[..., 4:], flip_rc(inner(flip_rc(x[..., 4:]))))
    torch.testing.assert_close(wrapper(flip_rc(x)), flip_rc(out))
    with pytest.raises(ValueError, match="width must be even; got width 7"):
        wrapper(torch.zeros(1, 3, 7))


def test_lm_head_votes_for_the_complement_and_is_equivariant(ids):
    torch.manual_seed(2)
    weight = torch.randn(5, 3)
    hidden = torch.randn(2, 7, 6)
    logits = rcps_lm_logits(hidden, weight, COMPLEMENT)
    # logit of token v = <forward half, w_v> + <un-flipped rc half, w_complement(v)>
    expected = torch.empty(2, 7, 5)
    for v in range(5):
        expected[..., v] = hidden[..., :3] @ weight[v] + hidden[..., 3:].flip(-1) @ weight[COMPLEMENT[v]]
    torch.testing.assert_close(logits, expected)
    # reverse-complementing the hidden state reverses the positions and complements the vocabulary
    torch.testing.assert_close(rcps_lm_logits(flip_rc(hidden), weight, COMPLEMENT), logits.flip(1)[..., COMPLEMENT])
    with pytest.raises(ValueError, match="half width 4 does not match the embedding width 3"):
        rcps_lm_logits(torch.zeros(1, 2, 8), weight, COMPLEMENT)


def test_embedding_refuses_a_complement_map_of_another_size():
    with pytest.raises(ValueError, match=r"one entry per token \(5\), got shape \(4,\)"):
        RCPSEmbedding(5, 3, torch.tensor([0, 3, 2, 1]))
