"""Building blocks shared by two or more families: attention and the mixer slot, MLP, stochastic depth, layer
scale, adaLN, patch embedding and the init that respects self-initialising modules. A layer only one family uses
lives in that family's package (``derf_zoo.models.<family>``)."""

from derf_zoo.layers.attention import Attention, KVCache
from derf_zoo.layers.drop_path import DropPath
from derf_zoo.layers.init import gpt2_normal, init_weights, trunc_normal_linear
from derf_zoo.layers.layer_scale import LayerScale
from derf_zoo.layers.mixers import MixerFactory, get_mixer, list_mixers, register_mixer
from derf_zoo.layers.mlp import Mlp, tanh_gelu
from derf_zoo.layers.modulation import AdaLNModulation, modulate
from derf_zoo.layers.patch_embed import PatchEmbed

__all__ = [
    "AdaLNModulation",
    "Attention",
    "DropPath",
    "KVCache",
    "LayerScale",
    "MixerFactory",
    "Mlp",
    "PatchEmbed",
    "get_mixer",
    "gpt2_normal",
    "init_weights",
    "list_mixers",
    "modulate",
    "register_mixer",
    "tanh_gelu",
    "trunc_normal_linear",
]
