"""A reference GPT written from nanoGPT's ``model.py`` (karpathy/nanoGPT, MIT) with the Derf paper's
``model_derf.patch`` as shared/PAPER.md §3.5 describes it: Derf/DyT in ``ln_1``/``ln_2``/``ln_f`` with one alpha
per site, Derf always with a bias, and the learnable ``shared_scale`` (init sqrt(n_embd)) on ``tok_emb + pos_emb``
for derf/dyt. Used only by the parity tests: the module names and the computation are nanoGPT's, so its state dict
is the layout ``from_nanogpt`` reads."""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class PointwiseNorm(nn.Module):
    def __init__(self, ndim, alpha, fn):
        super().__init__()
        self.fn = fn
        self.alpha = nn.Parameter(torch.ones(1) * alpha)
        if fn == "derf":
            self.shift = nn.Parameter(torch.zeros(1))
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim))

    def forward(self, x):
        if self.fn == "derf":
            return self.weight * torch.erf(self.alpha * x + self.shift) + self.bias
        return self.weight * torch.tanh(self.alpha * x) + self.bias


def make_norm(config, alpha):
    if config.norm_type in ("derf", "dyt"):
        return PointwiseNorm(config.n_embd, alpha, config.norm_type)
    return LayerNorm(config.n_embd, bias=config.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.n_embd = config.n_head, config.n_embd
        # the non-flash path's mask buffer, which nanoGPT saves in its checkpoints
        self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = make_norm(config, config.attn_alpha_init_value)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config, config.ffn_alpha_init_value)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass
class GPTConfig:
    block_size: int = 32
    vocab_size: int = 50
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True
    norm_type: str = "layernorm"  # annotated: the published patch's bare `norm_type = 'derf'` is no field
    attn_alpha_init_value: float = 1.0
    ffn_alpha_init_value: float = 1.0
    dec_alpha_init_value: float = 1.0


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config, config.dec_alpha_init_value),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        if config.norm_type in ("derf", "dyt"):
            self.shared_scale = nn.Parameter(torch.ones(1) * math.sqrt(config.n_embd))

    def forward(self, idx, targets=None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        if hasattr(self, "shared_scale"):
            x = x * self.shared_scale
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss
