"""The DNA tokenizer, the complement map, reverse complement and the LM corruptions (tokenizer-level facts)."""

import inspect
import random

import pytest
import torch

from derf_zoo.data.dna import (
    COMPLEMENT_IDS,
    DNA_VOCAB_CFG,
    MASK_ID,
    NUCLEOTIDE_IDS,
    PAD_ID,
    PAD_VOCAB_SIZE_MULTIPLE,
    SEP_ID,
    UNK_ID,
    VOCAB,
    DNATokenizer,
    UnknownCharacterError,
    causal_lm_pair,
    complement_ids,
    mask_tokens,
    padded_complement_ids,
    reverse_complement,
    reverse_complement_ids,
)


def test_ids_match_the_public_checkpoints():
    # HyenaDNA's CharacterTokenizer(characters=["A", "C", "G", "T", "N"]): specials 0..6, then the bases from 7.
    assert VOCAB == ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N")
    tok = DNATokenizer()
    assert tok.encode("ACGTN").tolist() == [7, 8, 9, 10, 11]
    assert tok.encode("acgtn").tolist() == [7, 8, 9, 10, 11]  # soft-masked (lower case) bases fold
    assert (PAD_ID, MASK_ID, UNK_ID, SEP_ID) == (4, 3, 6, 1)
    assert len(tok) == 12


def test_no_special_tokens_left_padding_and_truncation_like_the_references():
    tok = DNATokenizer()
    assert tok.encode("ACG", max_length=6, padding=True).tolist() == [4, 4, 4, 7, 8, 9]
    assert DNATokenizer(padding_side="right").encode("ACG", max_length=5, padding=True).tolist() == [7, 8, 9, 4, 4]
    assert tok.encode("ACGTA", max_length=3, truncation=True).tolist() == [7, 8, 9]  # keeps the first bases
    eos = DNATokenizer(add_eos=True)
    assert eos.encode("AC", max_length=4, padding=True).tolist() == [4, 7, 8, 1]
    assert eos.encode("ACGT", max_length=3, truncation=True).tolist() == [7, 8, 1]
    with pytest.raises(ValueError, match="more than max_length=3"):
        tok.encode("ACGTA", max_length=3)
    batch = tok.batch_encode(["A", "ACGTACGT"], 4)
    assert batch.tolist() == [[4, 4, 4, 7], [7, 8, 9, 10]]


def test_decode_round_trip_and_bad_ids():
    tok = DNATokenizer()
    seq = "".join(random.Random(0).choice("ACGTN") for _ in range(200))
    assert tok.decode(tok.encode(seq)) == seq
    assert tok.decode(tok.encode(seq, max_length=210, padding=True)) == seq
    assert tok.decode([4, 7, 3], skip_special_tokens=False) == "[PAD]A[MASK]"
    with pytest.raises(ValueError, match=r"\[12\]"):
        tok.decode([7, 12])


def test_unknown_characters_are_counted_and_reported():
    tok = DNATokenizer()
    with pytest.warns(UserWarning, match=r"3 of 8 characters .*'R' x2, '-' x1"):
        ids, unknown = tok.encode("ACRRG-TN", return_unknown_count=True)
    assert unknown == 3 and ids.tolist() == [7, 8, 6, 6, 9, 6, 10, 11]
    with pytest.warns(UserWarning, match="'é' x1"):  # beyond ASCII, still one [UNK] per character
        assert tok.encode("AéC").tolist() == [7, 6, 8]
    with pytest.raises(UnknownCharacterError, match="'X' x1"):
        DNATokenizer(on_unknown="error").encode("ACXG")
    with pytest.warns(UserWarning, match=r"2 characters in 1 of 2 sequences .*'Z' x2"):
        _, n = tok.batch_encode(["ACGT", "AZZ"], 4, return_unknown_count=True)
    assert n == 2
    assert DNATokenizer(on_unknown="ignore").encode("Q", return_unknown_count=True)[1] == 1


def test_complement_map():
    assert complement_ids(torch.tensor([7, 8, 9, 10, 11])).tolist() == [10, 9, 8, 7, 11]
    assert complement_ids(torch.arange(7)).tolist() == list(range(7))  # special tokens map to themselves
    assert torch.equal(COMPLEMENT_IDS[COMPLEMENT_IDS], torch.arange(12))  # an involution
    with pytest.raises(ValueError, match=r"0\.\.11"):
        complement_ids(torch.tensor([15]))


def test_the_complement_over_a_padded_vocabulary():
    padded = padded_complement_ids(16)
    assert padded[:12].tolist() == COMPLEMENT_IDS.tolist() and padded[12:].tolist() == [12, 13, 14, 15]
    assert torch.equal(padded[padded], torch.arange(16))
    with pytest.raises(ValueError, match="cover the DNA tokenizer's 12 tokens, got 11"):
        padded_complement_ids(11)


def test_one_vocabulary_for_both_dna_families():
    """HyenaDNA and Caduceus build their data configs on the vocabulary's one base and complement map; their model
    cards state the tokenizer's ids."""
    from derf_zoo.data import dna
    from derf_zoo.models import caduceus, hyenadna

    assert not hasattr(dna, "DNA_DATA_CFG")  # the base has its own name: DNA_DATA_CFG is each family's full config
    for family in (hyenadna, caduceus):
        assert {k: family.DNA_DATA_CFG[k] for k in DNA_VOCAB_CFG} == DNA_VOCAB_CFG
        ids = " ".join(map(str, DNATokenizer().encode("ACGTN").tolist()))
        assert f"A C G T N = ids {ids} " in family.CARD_INPUT
        assert family.DNA_VOCAB_SIZE == len(VOCAB) == DNA_VOCAB_CFG["vocab_size"]
    assert DNA_VOCAB_CFG["pad_token_id"] == PAD_ID == DNATokenizer.pad_token_id
    assert caduceus.dna_complement_map is padded_complement_ids
    assert set(caduceus.DNA_DATA_CFG) - set(hyenadna.DNA_DATA_CFG) == {"input_size"}  # the one difference
    for model in (hyenadna.HyenaDNA, caduceus.Caduceus):  # both pad the embedding to 16 rows by default
        assert inspect.signature(model).parameters["pad_vocab_size_multiple"].default == PAD_VOCAB_SIZE_MULTIPLE == 8


def test_reverse_complement_strings_tokens_and_round_trip():
    tok = DNATokenizer()
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("acgT") == "Acgt"
    seqs = ["".join(random.Random(i).choice("ACGT") for _ in range(50)) for i in range(3)]
    ids = torch.stack([tok.encode(s) for s in seqs])
    rc = reverse_complement_ids(ids)
    assert [tok.decode(r) for r in rc] == [reverse_complement(s) for s in seqs]  # batched along the last dim
    assert torch.equal(reverse_complement_ids(rc), ids)
    assert reverse_complement_ids(ids[None]).shape == (1, 3, 50)


@pytest.mark.parametrize("side", ["left", "right"])
def test_reverse_complement_keeps_padding_in_place(side):
    tok = DNATokenizer(padding_side=side)
    ids = tok.batch_encode(["AACG", "T", "ACGTAC"], 6)
    rc = reverse_complement_ids(ids, pad_id=PAD_ID)
    assert torch.equal(rc == PAD_ID, ids == PAD_ID)
    assert [tok.decode(r) for r in rc] == ["CGTT", "A", "GTACGT"]
    assert torch.equal(reverse_complement_ids(rc, pad_id=PAD_ID), ids)


def test_causal_pair_shifts_by_one():
    tokens = torch.tensor([[7, 8, 9, 10]])
    x, y = causal_lm_pair(tokens)
    assert x.tolist() == [[7, 8, 9]] and y.tolist() == [[8, 9, 10]]
    with pytest.raises(ValueError, match="at least 2"):
        causal_lm_pair(tokens[:, :1])


def test_mlm_masking_statistics():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(7, 11, (64, 4096), generator=g)
    tokens[:, :100] = PAD_ID  # padding is never chosen
    inputs, labels = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    chosen = labels != -100
    bases = tokens != PAD_ID
    assert not chosen[~bases].any()
    assert abs(chosen.sum().item() / bases.sum().item() - 0.15) < 0.005
    assert torch.equal(labels[chosen], tokens[chosen])  # labels hold the originals, -100 elsewhere
    assert torch.equal(inputs[~chosen], tokens[~chosen])  # unchosen tokens untouched
    n = chosen.sum().item()
    masked = (inputs[chosen] == MASK_ID).sum().item() / n
    kept = (inputs[chosen] == tokens[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.01
    # "kept" = the 10 % kept plus the random draws that hit the original base (1/4 of the random 10 %)
    assert abs(kept - (0.1 + 0.1 / 4)) < 0.01
    assert set(inputs[chosen].unique().tolist()) <= {MASK_ID, *NUCLEOTIDE_IDS}  # random only among A/C/G/T
    again, _ = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again, inputs)  # a seeded generator reproduces the masks
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(tokens, 0.0)
