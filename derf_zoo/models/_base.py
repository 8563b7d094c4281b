"""What every family's network shares: its norm sites resolved once, the site norms it builds itself, the switches
timm's trainers call (gradient checkpointing, no-weight-decay names) and the size checks of its arguments.

A family subclasses :class:`ZooModel`, names its sites in ``norm_sites`` and the parameters to keep out of weight
decay in ``no_weight_decay_names``, and keeps only what differs: its stem, its head and how it calls the backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import nn

from derf_zoo.backbone import BLOCK_SITES, Transformer
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.models._builder import check_int
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import tag_site

__all__ = ["ZooModel", "check_sizes"]


def check_sizes(minimum: int = 1, **sizes: Any) -> None:
    """Refuse, by name, any of ``sizes`` that is not an integer >= ``minimum`` (widths, depths, vocabularies)."""
    for name, value in sizes.items():
        check_int(name, value, minimum)


class ZooModel(nn.Module, HubMixin):
    """Base of every family's network (a ``torch.nn.Module`` with the Hub's ``save_pretrained``/``push_to_hub``).

    A subclass builds ``self.backbone`` (a :class:`~derf_zoo.backbone.Transformer`) and resolves its norm spec with
    :meth:`resolve_norms`, which records ``norm_specs`` (one canonical spec string per site: what the model card,
    ``config.json`` and the converters read).

    Attributes:
        norm_sites: the family's norm sites, in order (``("attn", "mlp", "final")`` unless the family says otherwise).
        no_weight_decay_names: parameter names the optimizer must not decay beyond the 1-D ones (timm's
            ``no_weight_decay``), e.g. ViT's positions and class token.
    """

    norm_sites: ClassVar[tuple[str, ...]] = BLOCK_SITES
    no_weight_decay_names: ClassVar[frozenset[str]] = frozenset()
    backbone: Transformer
    norm_specs: dict[str, str]

    def resolve_norms(
        self, norm: NormSpec | Mapping[str, NormSpec], site_alpha: Mapping[str, float] | None = None
    ) -> dict[str, Callable[..., nn.Module]]:
        """One norm factory per site of ``norm_sites`` (see :func:`~derf_zoo.norms.registry.resolve_norm_sites`),
        recorded in ``norm_specs``."""
        return self.record_norms(resolve_norm_sites(norm, self.norm_sites, site_alpha))

    def record_norms(self, sites: Mapping[str, Callable[..., nn.Module]]) -> dict[str, Callable[..., nn.Module]]:
        """Record the factories a family resolved itself (GPT-2 fills each site's alpha) in ``norm_specs``."""
        self.norm_specs = {site: norm_spec_string(factory) for site, factory in sites.items()}
        return dict(sites)

    @staticmethod
    def site_norm(factory: Callable[..., nn.Module], site: str, dim: int, eps: float) -> nn.Module:
        """A norm the family places itself (outside the backbone's blocks), built and tagged as the backbone does."""
        return tag_site(factory(dim, eps=eps), site)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the backbone blocks' activations in the backward pass instead of storing them (timm's switch).

        Args:
            enable: turn checkpointing on (True) or off (False); stems and heads are never checkpointed.
        """
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters the optimizer should not decay (timm's convention, read by
        :func:`derf_zoo.tasks.optim.param_groups`, which also spares every 1-D parameter).

        Returns:
            the family's ``no_weight_decay_names``: ViT's ``pos_embed`` and ``cls_token``, wav2vec 2.0's ``mask_emb``
            (the learned vector that replaces masked frames); none for the other families.
        """
        return set(self.no_weight_decay_names)
