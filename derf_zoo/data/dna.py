"""The DNA character tokenizer of the public HyenaDNA and Caduceus checkpoints, and sequence utilities.

Token ids (HazyResearch/hyena-dna ``src/dataloaders/datasets/hg38_char_tokenizer.py``, which Caduceus reuses):
``[CLS]`` 0, ``[SEP]`` 1, ``[BOS]`` 2, ``[MASK]`` 3, ``[PAD]`` 4, ``[RESERVED]`` 5, ``[UNK]`` 6, then A 7, C 8,
G 9, T 10, N 11: a vocabulary of 12 (the checkpoints pad their embedding to 16 rows; see :data:`VOCAB_SIZE`).
Lower case is folded to upper case (soft-masked repeats in reference genomes are lower case); any other character
becomes ``[UNK]`` and is counted and reported, never dropped silently.

The references' conventions, which :class:`DNATokenizer` follows:

- no special tokens are added (HyenaDNA and Caduceus call the tokenizer with ``add_special_tokens=False``);
  ``add_eos=True`` appends ``[SEP]``, as their datasets' ``add_eos`` flag does;
- padding is on the **left** (``padding_side="left"``, the CharacterTokenizer default; a causal model then ends on
  the last real base), truncation keeps the first ``max_length`` characters (Hugging Face's right truncation).

Also here: the token-level complement map (A<->T, C<->G, N and the special tokens map to themselves), reverse
complement of strings and of batched token tensors, the causal-LM shift and BERT-style masking for masked LM.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor

from derf_zoo._validate import check_choice, check_int

__all__ = [
    "CLS_ID", "COMPLEMENT_IDS", "DNA_VOCAB_CFG", "MASK_ID", "NUCLEOTIDE_IDS", "PAD_ID", "PAD_VOCAB_SIZE_MULTIPLE",
    "SEP_ID", "SPECIAL_TOKENS", "UNK_ID", "UNSEEN_LOGIT", "VOCAB", "VOCAB_SIZE", "DNATokenizer",
    "UnknownCharacterError", "alphabet_prior",
    "causal_lm_pair", "complement_ids", "dna_card_texts", "mask_tokens", "padded_complement_ids",
    "reverse_complement", "reverse_complement_ids",
]  # fmt: skip

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
ALPHABET = "ACGTN"
VOCAB = (*SPECIAL_TOKENS, *ALPHABET)
#: 12 tokens. HyenaDNA's checkpoints pad the embedding to a multiple of 8 (16 rows) and Caduceus's config uses
#: ``pad_vocab_size_multiple: 8`` too; a model may pad, the ids above 11 are simply never produced.
VOCAB_SIZE = len(VOCAB)
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
A_ID, C_ID, G_ID, T_ID, N_ID = range(7, 12)
#: the ids of A, C, G, T (what masked LM's random replacements draw from).
NUCLEOTIDE_IDS = (A_ID, C_ID, G_ID, T_ID)

# Byte -> id lookup (upper and lower case); everything else is [UNK]. Characters beyond Latin-1 are encoded as
# '?' first, which is [UNK] too, so the count stays right.
_ENCODE = np.full(256, UNK_ID, dtype=np.int64)
for _i, _ch in enumerate(ALPHABET):
    _ENCODE[ord(_ch)] = _ENCODE[ord(_ch.lower())] = A_ID + _i
#: complement of every token id: A<->T, C<->G, N -> N, special tokens -> themselves.
COMPLEMENT_IDS = torch.arange(VOCAB_SIZE)
COMPLEMENT_IDS[[A_ID, C_ID, G_ID, T_ID]] = torch.tensor([T_ID, G_ID, C_ID, A_ID])
_COMPLEMENT_STR = str.maketrans("ACGTNacgtn", "TGCANtgcan")
#: The embedding rows of the public HyenaDNA and Caduceus checkpoints are a multiple of 8 (12 tokens -> 16 rows).
PAD_VOCAB_SIZE_MULTIPLE = 8
#: The data config of a model reading this vocabulary: the one base HyenaDNA's and Caduceus' entry points build
#: theirs on (each adds its model card texts, :func:`dna_card_texts`, and Caduceus its training window).
DNA_VOCAB_CFG = {"space": "dna", "vocabulary": "dna_char", "vocab_size": VOCAB_SIZE, "pad_token_id": PAD_ID,
                "first_conv": None, "classifier": None}  # fmt: skip


def dna_card_texts(max_length: str, example_length: str) -> dict[str, str]:
    """A DNA model card's Input line and usage example (``card_input``/``card_example`` of a data config): token
    ids, the bases' ids, and a random A/C/G/T window.

    Args:
        max_length: the longest input, as a ``derf_zoo.hub.card`` field (``"{model.max_seq_len}"``) or a number.
        example_length: the example's window, likewise.
    """
    bases = f"{' '.join(ALPHABET)} = ids {' '.join(str(A_ID + i) for i in range(len(ALPHABET)))}"
    return {"card_input": f"DNA token ids (batch, length), length <= {max_length}; {bases} (the HyenaDNA/Caduceus "
                          "character tokenizer)",
            "card_example": f"logits = model(torch.randint({A_ID}, {T_ID + 1}, (1, {example_length})))  # random "
                            "A/C/G/T ids"}  # fmt: skip


def padded_complement_ids(vocab_size: int) -> Tensor:
    """:data:`COMPLEMENT_IDS` over a model's padded vocabulary (16 rows for 12 tokens): the padding ids, which the
    tokenizer never produces, map to themselves.

    Raises:
        ValueError: ``vocab_size`` smaller than the tokenizer's 12 tokens.
    """
    if vocab_size < VOCAB_SIZE:
        raise ValueError(f"vocab_size must cover the DNA tokenizer's {VOCAB_SIZE} tokens, got {vocab_size}.")
    return torch.cat([COMPLEMENT_IDS, torch.arange(VOCAB_SIZE, vocab_size)])


#: The logit bias a DNA LM head starts with for the ids a genome window never holds (see :func:`alphabet_prior`).
UNSEEN_LOGIT = -10.0


def alphabet_prior(vocab_size: int) -> Tensor:
    """A DNA LM head's bias at init over a padded vocabulary: 0 for the bases (A, C, G, T, N) and
    :data:`UNSEEN_LOGIT` for the specials and the padding rows, which genome windows never hold as targets (the data's
    prior, up to a constant: the bases are close to uniform in genomes).

    Raises:
        ValueError: ``vocab_size`` smaller than the tokenizer's 12 tokens.
    """
    if vocab_size < VOCAB_SIZE:
        raise ValueError(f"vocab_size must cover the DNA tokenizer's {VOCAB_SIZE} tokens, got {vocab_size}.")
    prior = torch.full((vocab_size,), UNSEEN_LOGIT)
    prior[A_ID : N_ID + 1] = 0.0
    return prior


class UnknownCharacterError(ValueError):
    """A sequence has characters outside A, C, G, T, N (either case) and ``on_unknown="error"`` was asked for."""


def _unknown_report(seq: str) -> str:
    counts = Counter(ch for ch in seq if ch not in "ACGTNacgtn")
    return ", ".join(f"{ch!r} x{n}" for ch, n in counts.most_common(10)) + (", ..." if len(counts) > 10 else "")


class DNATokenizer:
    """Character tokenizer with the ids of the public HyenaDNA/Caduceus checkpoints.

    Args:
        padding_side: ``"left"`` (the references' default) or ``"right"``.
        add_eos: append ``[SEP]`` to every encoded sequence (counted inside ``max_length``).
        on_unknown: what a character outside ``ACGTN`` (either case) does: ``"warn"`` (encode it as ``[UNK]`` and
            warn with the count and the characters), ``"error"`` (raise :class:`UnknownCharacterError`) or
            ``"ignore"`` (encode as ``[UNK]`` silently; the count is still returned on request).

    Example:
        >>> tok = DNATokenizer()
        >>> tok.encode("acgtN").tolist()
        [7, 8, 9, 10, 11]
        >>> tok.decode(tok.encode("ACGT", max_length=6, padding=True))
        'ACGT'
    """

    vocab = VOCAB
    pad_token_id = PAD_ID
    mask_token_id = MASK_ID
    unk_token_id = UNK_ID
    sep_token_id = SEP_ID

    def __init__(self, padding_side: Literal["left", "right"] = "left", add_eos: bool = False,
                 on_unknown: Literal["warn", "error", "ignore"] = "warn") -> None:  # fmt: skip
        check_choice("padding_side", padding_side, ("left", "right"))
        check_choice("on_unknown", on_unknown, ("warn", "error", "ignore"))
        self.padding_side = padding_side
        self.add_eos = bool(add_eos)
        self.on_unknown = on_unknown

    def __len__(self) -> int:
        return VOCAB_SIZE

    def _ids(self, seq: str, what: str) -> tuple[np.ndarray, int]:
        if not isinstance(seq, str):
            raise TypeError(f"{what} must be a str, got {type(seq).__name__}.")
        ids = _ENCODE[np.frombuffer(seq.encode("latin-1", errors="replace"), dtype=np.uint8)]
        unknown = int((ids == UNK_ID).sum())
        if unknown and self.on_unknown != "ignore":
            msg = (f"{what}: {unknown} of {len(seq)} characters are outside the alphabet ACGTN (either case) and "
                   f"were encoded as [UNK] (id {UNK_ID}): {_unknown_report(seq)}.")  # fmt: skip
            if self.on_unknown == "error":
                raise UnknownCharacterError(msg)
            warnings.warn(msg, stacklevel=3)
        return ids, unknown

    def _fit(self, ids: np.ndarray, max_length: int | None, padding: bool, truncation: bool, what: str) -> np.ndarray:
        if self.add_eos:
            ids = np.append(ids, SEP_ID)
        if max_length is None:
            if padding:
                raise ValueError("padding=True needs max_length.")
            return ids
        check_int("max_length", max_length, 1)
        if len(ids) > max_length:
            if not truncation:
                raise ValueError(f"{what} has {len(ids)} tokens, more than max_length={max_length}; pass "
                                 "truncation=True to keep the first max_length tokens.")  # fmt: skip
            ids = np.append(ids[: max_length - 1], SEP_ID) if self.add_eos else ids[:max_length]
        if padding and len(ids) < max_length:
            pad = np.full(max_length - len(ids), PAD_ID, dtype=np.int64)
            ids = np.concatenate([pad, ids] if self.padding_side == "left" else [ids, pad])
        return ids

    @overload
    def encode(self, seq: str, max_length: int | None = ..., padding: bool = ..., truncation: bool = ...,
               return_unknown_count: Literal[False] = ...) -> Tensor: ...  # fmt: skip
    @overload
    def encode(self, seq: str, max_length: int | None = ..., padding: bool = ..., truncation: bool = ...,
               return_unknown_count: Literal[True] = ...) -> tuple[Tensor, int]: ...  # fmt: skip

    def encode(self, seq: str, max_length: int | None = None, padding: bool = False, truncation: bool = False,
               return_unknown_count: bool = False) -> Tensor | tuple[Tensor, int]:  # fmt: skip
        """Token ids (int64, 1-D) of one sequence.

        Args:
            seq: the bases.
            max_length: the length to pad to and the limit of ``truncation`` (with ``add_eos``, ``[SEP]`` counts).
            padding: pad with ``[PAD]`` to ``max_length`` on :attr:`padding_side`.
            truncation: keep the first ``max_length`` tokens of a longer sequence (else that is an error).
            return_unknown_count: also return how many characters became ``[UNK]``.
        """
        ids, unknown = self._ids(seq, "sequence")
        out = torch.from_numpy(self._fit(ids, max_length, padding, truncation, "sequence").copy())
        return (out, unknown) if return_unknown_count else out

    def batch_encode(self, seqs: Sequence[str], max_length: int, truncation: bool = True,
                     return_unknown_count: bool = False) -> Tensor | tuple[Tensor, int]:  # fmt: skip
        """A padded ``(N, max_length)`` batch (one unknown-character warning for the whole batch at most)."""
        out = torch.full((len(seqs), max_length), PAD_ID, dtype=torch.long)
        mode, self.on_unknown = self.on_unknown, ("error" if self.on_unknown == "error" else "ignore")
        unknown, bad = 0, []
        try:
            for i, s in enumerate(seqs):
                ids, n = self._ids(s, f"sequence {i}")
                unknown += n
                if n:
                    bad.append(s)
                out[i] = torch.from_numpy(self._fit(ids, max_length, True, truncation, f"sequence {i}"))
        finally:
            self.on_unknown = mode
        if unknown and mode == "warn":
            warnings.warn(f"{unknown} characters in {len(bad)} of {len(seqs)} sequences are outside the alphabet "
                          f"ACGTN (either case) and were encoded as [UNK] (id {UNK_ID}): "
                          f"{_unknown_report(''.join(bad))}.", stacklevel=2)  # fmt: skip
        return (out, unknown) if return_unknown_count else out

    def decode(self, ids: Tensor | Sequence[int], skip_special_tokens: bool = True) -> str:
        """The string of ``ids`` (1-D); special tokens are dropped unless ``skip_special_tokens=False``."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        bad = [v for v in values if not 0 <= v < VOCAB_SIZE]
        if bad:
            raise ValueError(f"decode: ids {sorted(set(bad))[:10]} are outside the vocabulary 0..{VOCAB_SIZE - 1}.")
        return "".join(VOCAB[v] for v in values if not (skip_special_tokens and v < A_ID))


def complement_ids(ids: Tensor) -> Tensor:
    """The complement of every token (A<->T, C<->G; N and special tokens unchanged)."""
    table = COMPLEMENT_IDS.to(ids.device)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= VOCAB_SIZE):
        raise ValueError(f"complement_ids: ids must lie in 0..{VOCAB_SIZE - 1}, "
                         f"got {int(ids.min())}..{int(ids.max())}.")
    return table[ids]


def reverse_complement_ids(ids: Tensor, pad_id: int | None = None) -> Tensor:
    """The reverse complement of token ids along the last dim (any leading batch dims).

    Args:
        ids: token ids ``(..., L)``.
        pad_id: when given, padding stays where it was: each row's non-pad run is reverse-complemented in place
            (a left-padded batch stays left-padded). Padding must be contiguous at one end of each row.
    """
    rc = complement_ids(ids).flip(-1)
    if pad_id is None:
        return rc
    is_pad = ids == pad_id
    length = ids.shape[-1]
    left = is_pad[..., :1]  # rows whose first token is a pad are left-padded
    n_pad = is_pad.sum(-1, keepdim=True)
    # Flipping moves a row's pads to the other end; rolling the row by its pad count puts them back.
    shift = torch.where(left, -n_pad, n_pad)
    index = (torch.arange(length, device=ids.device) + shift) % length
    return rc.gather(-1, index)


def reverse_complement(seq: str) -> str:
    """The reverse complement of a string (case kept; characters other than ACGTN/acgtn unchanged)."""
    return seq.translate(_COMPLEMENT_STR)[::-1]


def causal_lm_pair(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """``(inputs, targets)`` of next-token prediction: ``tokens[..., :-1]`` and ``tokens[..., 1:]`` (HyenaDNA)."""
    if tokens.shape[-1] < 2:
        raise ValueError(f"causal_lm_pair needs windows of at least 2 tokens, got {tokens.shape[-1]}.")
    return tokens[..., :-1], tokens[..., 1:]


def mask_tokens(tokens: Tensor, mlm_probability: float = 0.15, generator: torch.Generator | None = None,
                mask_fraction: float = 0.8, random_fraction: float = 0.1) -> tuple[Tensor, Tensor]:  # fmt: skip
    """BERT-style masking for masked LM (Caduceus: 15 %, of which 80 % ``[MASK]``, 10 % random, 10 % kept).

    Only base tokens (A, C, G, T, N) are chosen; padding and special tokens are never masked or scored. Random
    replacements are drawn among A, C, G, T only (a random special token would be no DNA).

    Args:
        tokens: ``(..., L)`` token ids.
        mlm_probability: share of base tokens that are chosen (and scored).
        generator: a CPU generator for reproducible masks (validation); None uses the global RNG.
        mask_fraction / random_fraction: of the chosen tokens, the shares replaced by ``[MASK]`` and by a random
            base; the rest keep their token.

    Returns:
        ``(inputs, labels)``: the corrupted ids and the original ids at the chosen positions, -100 elsewhere
        (PyTorch's cross-entropy ``ignore_index``).
    """
    if not 0.0 < mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability!r}.")
    if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
        raise ValueError(f"mask_fraction ({mask_fraction}) and random_fraction ({random_fraction}) must be >= 0 "
                         "and sum to at most 1.")  # fmt: skip
    device = tokens.device

    def uniform() -> Tensor:
        return torch.rand(tokens.shape, generator=generator).to(device)

    chosen = (uniform() < mlm_probability) & (tokens >= A_ID)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, -100))
    action = uniform()  # one draw decides between [MASK], random and keep
    to_mask = chosen & (action < mask_fraction)
    to_random = chosen & (action >= mask_fraction) & (action < mask_fraction + random_fraction)
    bases = torch.tensor(NUCLEOTIDE_IDS, device=device)
    random_bases = bases[torch.randint(0, len(NUCLEOTIDE_IDS), tokens.shape, generator=generator).to(device)]
    inputs = torch.where(to_mask, torch.full_like(tokens, MASK_ID), tokens)
    inputs = torch.where(to_random, random_bases, inputs)
    return inputs, labels
