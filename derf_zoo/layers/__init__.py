"""Building blocks shared by every family: attention, MLP, stochastic depth, layer scale, adaLN."""

from derf_zoo.layers.attention import Attention
from derf_zoo.layers.drop_path import DropPath
from derf_zoo.layers.layer_scale import LayerScale
from derf_zoo.layers.mlp import Mlp
from derf_zoo.layers.modulation import AdaLNModulation, modulate

__all__ = ["AdaLNModulation", "Attention", "DropPath", "LayerScale", "Mlp", "modulate"]
