"""The module tree of Caduceus' ``CaduceusForMaskedLM`` (kuleshov-group/caduceus ``modeling_caduceus.py`` and
``modeling_rcps.py``), for the layout tests: its state dict has the reference's names and shapes, so a strict
``load_state_dict`` checks an export as the reference would.

Mamba is ``mambapy``'s ``MambaBlock``, which has ``mamba_ssm``'s parameter names and shapes. ``BiMambaWrapper``
ties the reverse direction's ``in_proj``/``out_proj`` to the forward one (``bidirectional_weight_tie``), so the
state dict lists them under both names, as the public checkpoints do. Caduceus-Ph's forward (the non-fused
"Add -> RMSNorm -> BiMamba" block, ``norm_f``, the tied head) is written out; Caduceus-PS is the structure only
(its function is tested against the fused formulation in ``test_caduceus.py``). Independent of derf_zoo.
"""

import torch
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig
from torch import nn


class RefRMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class RefWrapper(nn.Module):
    """``RCPSWrapper`` / ``RCPSAddNormWrapper``: the shared module under ``.submodule`` (structure only)."""

    def __init__(self, submodule):
        super().__init__()
        self.submodule = submodule


class RefBiMamba(nn.Module):
    def __init__(self, d, d_state, weight_tie=True):
        super().__init__()
        cfg = MambaConfig(d_model=d, n_layers=1, d_state=d_state, expand_factor=2, d_conv=4)
        self.mamba_fwd, self.mamba_rev = MambaBlock(cfg), MambaBlock(cfg)
        if weight_tie:
            self.mamba_rev.in_proj, self.mamba_rev.out_proj = self.mamba_fwd.in_proj, self.mamba_fwd.out_proj

    def forward(self, x):
        return self.mamba_fwd(x) + self.mamba_rev(x.flip(1)).flip(1)


class RefBlock(nn.Module):
    def __init__(self, d, d_state, rcps, fused_add_norm, weight_tie):
        super().__init__()
        mixer, norm = RefBiMamba(d, d_state, weight_tie), RefRMSNorm(d)
        self.mixer = RefWrapper(mixer) if rcps else mixer
        self.norm = RefWrapper(norm) if rcps and not fused_add_norm else norm


class RefEmbeddings(nn.Module):
    def __init__(self, vocab, d, rcps, complement_map):
        super().__init__()
        if rcps:  # RCPSEmbedding: the complement map buffer, then the table under .embedding
            self.word_embeddings = nn.Module()
            self.word_embeddings.register_buffer("complement_map", complement_map.clone())
            self.word_embeddings.embedding = nn.Embedding(vocab, d)
        else:
            self.word_embeddings = nn.Embedding(vocab, d)


class RefBackbone(nn.Module):
    def __init__(self, d, n_layer, d_state, vocab, rcps, fused_add_norm, weight_tie, complement_map):
        super().__init__()
        self.embeddings = RefEmbeddings(vocab, d, rcps, complement_map)
        self.layers = nn.ModuleList(RefBlock(d, d_state, rcps, fused_add_norm, weight_tie) for _ in range(n_layer))
        norm_f = RefRMSNorm(d)  # CaduceusMixerModel: RCPSAddNormWrapper only when rcps and not fused_add_norm
        self.norm_f = RefWrapper(norm_f) if rcps and not fused_add_norm else norm_f


class RefCaduceusForMaskedLM(nn.Module):
    def __init__(self, d_model=8, n_layer=2, d_state=4, vocab=16, rcps=False, fused_add_norm=False, weight_tie=True):
        super().__init__()
        complement_map = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, *range(12, vocab)])
        self.caduceus = nn.Module()
        self.caduceus.backbone = RefBackbone(d_model, n_layer, d_state, vocab, rcps, fused_add_norm, weight_tie,
                                             complement_map)  # fmt: skip
        table = self.caduceus.backbone.embeddings.word_embeddings
        if rcps:  # RCPSLMHead: its own complement map, and a Linear tied to the embedding table
            self.lm_head = nn.Module()
            self.lm_head.register_buffer("complement_map", complement_map.clone())
            self.lm_head.lm_head = nn.Linear(d_model, vocab, bias=False)
            self.lm_head.lm_head.weight = table.embedding.weight
        else:
            self.lm_head = nn.Linear(d_model, vocab, bias=False)
            self.lm_head.weight = table.weight

    def forward(self, ids):
        """Caduceus-Ph, non-fused: Add -> RMSNorm -> BiMamba per layer, Add -> norm_f, the tied head."""
        backbone = self.caduceus.backbone
        hidden, residual = backbone.embeddings.word_embeddings(ids), None
        for layer in backbone.layers:
            residual = hidden + residual if residual is not None else hidden
            hidden = layer.mixer(layer.norm(residual))
        return self.lm_head(backbone.norm_f(hidden + residual))
