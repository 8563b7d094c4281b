"""Released weights and Hub folders: the manifest, ``pretrained=True``, save/load/push, strict and safe.

Weights are safetensors only; nothing downloaded is ever unpickled.
"""

from derf_zoo.hub.download import WeightsIntegrityError, WeightsNotAvailableError, sha256_file, weights_file
from derf_zoo.hub.folder import from_pretrained, load_pretrained, model_config, push_to_hub, save_pretrained
from derf_zoo.hub.manifest import (
    NoPretrainedWeightsError,
    ReleasedWeights,
    load_manifest,
    released_weights,
    resolve_weights,
)
from derf_zoo.hub.state_dict import WeightsMismatchError, load_into, read_safetensors

__all__ = [
    "NoPretrainedWeightsError",
    "ReleasedWeights",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "WeightsNotAvailableError",
    "from_pretrained",
    "load_into",
    "load_manifest",
    "load_pretrained",
    "model_config",
    "push_to_hub",
    "read_safetensors",
    "released_weights",
    "resolve_weights",
    "save_pretrained",
    "sha256_file",
    "weights_file",
]
