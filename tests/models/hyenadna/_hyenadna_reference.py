"""A minimal HyenaDNA written from the reference's equations and names, for the parity tests.

Follows HazyResearch/hyena-dna: ``standalone_hyenadna.py`` (fftconv with ``k_f / fft_size`` and
``norm="forward"``, the fused "dropout -> add -> LN -> mixer" Block, GPT2Embeddings, LMBackbone with ``ln_f``)
and ``src/models/sequence/hyena.py`` (the filter's "(v o)" channel layout, ``shift`` of the window). One Sin
module is shared by every activation of the filter MLP, so the state dict lists its ``freq`` once per use, as
the public checkpoints do. Independent of derf_zoo: only torch.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def ref_fftconv(u, k, d):
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k, n=fft_size) / fft_size
    u_f = torch.fft.rfft(u.to(dtype=k.dtype), n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return (y + u * d.unsqueeze(-1)).to(dtype=u.dtype)


class RefSin(nn.Module):
    def __init__(self, dim, w=10):
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x):
        return torch.sin(self.freq * x)


class RefPositionalEmbedding(nn.Module):
    def __init__(self, emb_dim, seq_len):
        super().__init__()
        t = torch.linspace(0, 1, seq_len)[None, :, None]
        bands = (emb_dim - 1) // 2
        t_rescaled = torch.linspace(0, seq_len - 1, seq_len)[None, :, None]
        w = 2 * math.pi * t_rescaled / seq_len
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        z = torch.exp(-1j * f * w)
        self.register_buffer("z", torch.cat([t, z.real, z.imag], dim=-1))
        self.register_buffer("t", t)


class RefModulation(nn.Module):
    def __init__(self, d_model, shift):
        super().__init__()
        self.shift = shift
        max_decay, min_decay = math.log(1e-2) / 0.3, math.log(1e-2) / 1.5
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, d_model)[None, None])

    def forward(self, t, x):
        return x * (torch.exp(-t * self.deltas.abs()) + self.shift)


class RefHyenaFilter(nn.Module):
    def __init__(self, d_model, emb_dim, order, seq_len, w, shift, num_inner_mlps=2):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(d_model))
        self.pos_emb = RefPositionalEmbedding(emb_dim, seq_len)
        act = RefSin(order, w)
        self.implicit_filter = nn.Sequential(nn.Linear(emb_dim, order), act)
        for _ in range(num_inner_mlps):
            self.implicit_filter.append(nn.Linear(order, order))
            self.implicit_filter.append(act)
        self.implicit_filter.append(nn.Linear(order, d_model, bias=False))
        self.modulation = RefModulation(d_model, shift)

    def filter(self, length):
        z, t = self.pos_emb.z[:, :length], self.pos_emb.t[:, :length]
        return self.modulation(t, self.implicit_filter(z))


class RefHyenaOperator(nn.Module):
    def __init__(self, d_model, l_max, order=2, filter_order=64, emb_dim=5, w=10, shift=0.0):
        super().__init__()
        self.d_model, self.l_max, self.order = d_model, l_max, order
        inner = d_model * (order + 1)
        self.in_proj = nn.Linear(d_model, inner)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_filter = nn.Conv1d(inner, inner, 3, padding=2, groups=inner)
        self.filter_fn = RefHyenaFilter(d_model * (order - 1), emb_dim, filter_order, l_max, w, shift)

    def forward(self, u):
        length = u.size(-2)
        l_filter = min(length, self.l_max)
        u = self.in_proj(u).transpose(1, 2)
        uc = self.short_filter(u)[..., :l_filter]
        *x, v = uc.split(self.d_model, dim=1)
        k = self.filter_fn.filter(l_filter)[0]  # (l, (v o))
        o_ = self.order - 1
        k = k.reshape(l_filter, self.d_model, o_).permute(2, 1, 0)  # "c l (v o) -> c o v l"
        bias = self.filter_fn.bias.reshape(self.d_model, o_).t()  # "(v o) -> o v"
        for o, x_i in enumerate(reversed(x[1:])):
            v = ref_fftconv(v * x_i, k[o], bias[o])
        return self.out_proj((v * x[0]).transpose(1, 2))


class RefMlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class RefBlock(nn.Module):
    """prenorm=True: Add -> LN -> Mixer -> Add -> LN -> MLP, returning (hidden, residual)."""

    def __init__(self, d, d_inner, mixer_kwargs):
        super().__init__()
        self.mixer = RefHyenaOperator(d, **mixer_kwargs)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = RefMlp(d, d_inner)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(self, hidden, residual=None):
        residual = hidden + residual if residual is not None else hidden
        hidden = self.mixer(self.norm1(residual))
        residual = hidden + residual
        return self.mlp(self.norm2(residual)), residual


class RefEmbeddings(nn.Module):
    def __init__(self, vocab, d):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)


class RefBackbone(nn.Module):
    def __init__(self, d, n_layer, d_inner, vocab, mixer_kwargs):
        super().__init__()
        self.embeddings = RefEmbeddings(vocab, d)
        self.layers = nn.ModuleList(RefBlock(d, d_inner, mixer_kwargs) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids):
        hidden, residual = self.embeddings.word_embeddings(ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        return self.ln_f(hidden + residual)


class RefHyenaDNALM(nn.Module):
    """ConvLMHeadModel: backbone + lm_head tied to the embedding (vocab padded to a multiple of 8)."""

    def __init__(self, d_model=16, n_layer=2, vocab_size=12, l_max=40, **mixer_kwargs):
        super().__init__()
        vocab = math.ceil(vocab_size / 8) * 8
        self.backbone = RefBackbone(d_model, n_layer, 4 * d_model, vocab, {"l_max": l_max, **mixer_kwargs})
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.backbone.embeddings.word_embeddings.weight
        with torch.no_grad():  # give every weight a non-trivial value (the LayerNorm affines too)
            for p in self.parameters():
                p.add_(0.1 * torch.randn_like(p))

    def forward(self, ids):
        return self.lm_head(self.backbone(ids))
