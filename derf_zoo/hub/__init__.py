"""Released weights and Hub folders: the manifest, ``pretrained=True``, save/load/push, strict and safe.

Weights are safetensors only; nothing downloaded is ever unpickled. This package imports no model family and
builds no model: a family registers its key maps and its task with the model registry, which calls in here.
"""

from derf_zoo.hub.download import WeightsIntegrityError, WeightsNotAvailableError, sha256_file, weights_file
from derf_zoo.hub.folder import load_pretrained, model_config, push_to_hub, read_config, resolve_folder, save_pretrained
from derf_zoo.hub.manifest import (
    NoPretrainedWeightsError,
    ReleasedWeights,
    load_manifest,
    released_weights,
    resolve_weights,
)
from derf_zoo.weights.state_dict import WeightsMismatchError, load_into, read_safetensors

__all__ = [
    "NoPretrainedWeightsError",
    "ReleasedWeights",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "WeightsNotAvailableError",
    "load_into",
    "load_manifest",
    "load_pretrained",
    "model_config",
    "push_to_hub",
    "read_config",
    "read_safetensors",
    "released_weights",
    "resolve_folder",
    "resolve_weights",
    "save_pretrained",
    "sha256_file",
    "weights_file",
]
