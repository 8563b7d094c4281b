"""The VisionTransformer network: its modules, forward pass and norm sites (the family's doc:
``derf_zoo.models.vit``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.layers import PatchEmbed, init_weights, trunc_normal_linear
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.norms.registry import NormSpec

__all__ = ["GlobalPool", "VisionTransformer"]


GlobalPool = Literal["token", "avg"]


class VisionTransformer(ZooModel):
    """ViT classifier: patch embedding + class token + learned positions -> Transformer -> pooled head.

    Args:
        img_size: input resolution; must be divisible by ``patch_size``.
        patch_size: patch side.
        in_chans: image channels.
        num_classes: classes of the head (0: no head, ``forward`` returns pooled features).
        global_pool: ``"token"`` (class token, final norm before pooling) or ``"avg"`` (mean of the patch
            tokens, final norm after pooling as ``fc_norm``: the paper's setting).
        embed_dim: width.
        depth: blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over ``embed_dim``.
        qkv_bias: bias on the qkv projection.
        class_token: prepend a learnable class token.
        norm: norm spec for every site, or per site (``attn``, ``mlp``, ``final``).
        norm_eps: eps of normalizing layers (timm's 1e-6).
        drop_rate: dropout before the head.
        pos_drop_rate: dropout after adding positions.
        attn_drop_rate: attention-probability dropout.
        proj_drop_rate: dropout after attention projection and in the MLP.
        drop_path_rate: stochastic depth of the last block (linear schedule).
        layer_scale: LayerScale initial value, or None.
    """

    no_weight_decay_names = frozenset({"pos_embed", "cls_token"})

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: GlobalPool = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}.")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True.")
        check_sizes(0, num_classes=num_classes)
        check_sizes(in_chans=in_chans)
        for name, value in (("img_size", img_size), ("patch_size", patch_size)):
            for v in value if isinstance(value, (tuple, list)) else (value,):
                check_sizes(**{name: v})
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if class_token else 0
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        sites = self.resolve_norms(norm)
        use_fc_norm = global_pool == "avg"  # the final norm after pooling, so the family holds it, not the backbone
        self.backbone = Transformer(
            embed_dim, depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            norm={s: sites[s] for s in ("attn", "mlp")} if use_fc_norm else sites, norm_eps=norm_eps,
            drop_path_rate=drop_path_rate, attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
            layer_scale=layer_scale, final_norm="none" if use_fc_norm else "after",
        )  # fmt: skip
        self.fc_norm = self.site_norm(sites["final"], "final", embed_dim, norm_eps) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's ViT init: truncated-normal(0.02) linears and positions, near-zero class token, zero biases.

        Submodules with an init of their own (adaLN-Zero modulation, say) keep it.
        """
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        init_weights(self, trunc_normal_linear)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + patches, D), after the final norm for token pooling."""
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        return self.backbone(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool tokens, apply ``fc_norm`` (avg pooling) and the head; ``pre_logits`` stops before the head."""
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: GlobalPool | None = None) -> None:
        """Replace the head (timm's API); a new ``global_pool`` must keep the norm placement (token vs avg)."""
        if global_pool is not None and global_pool != self.global_pool:
            raise ValueError(
                f"This model was built with global_pool={self.global_pool!r}; the final norm sits "
                f"{'before' if self.global_pool == 'token' else 'after'} pooling, so switching to "
                f"{global_pool!r} needs a new model."
            )
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
