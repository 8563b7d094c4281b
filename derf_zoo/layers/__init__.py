"""Building blocks shared by every family: attention, MLP, stochastic depth, layer scale, adaLN, patch embedding."""

from derf_zoo.layers.attention import Attention
from derf_zoo.layers.drop_path import DropPath
from derf_zoo.layers.layer_scale import LayerScale
from derf_zoo.layers.mlp import Mlp
from derf_zoo.layers.modulation import AdaLNModulation, modulate
from derf_zoo.layers.patch_embed import PatchEmbed

__all__ = ["AdaLNModulation", "Attention", "DropPath", "LayerScale", "Mlp", "PatchEmbed", "modulate"]
