"""A family added the way CONTRIBUTING.md says, without touching derf_zoo/hub/: it saves, loads, pulls released
weights in a foreign layout through its own key map, and its model card says what its task is."""

import pytest
import torch

import derf_zoo
from derf_zoo.backbone import Transformer
from derf_zoo.hub import manifest as manifest_module
from derf_zoo.hub import sha256_file
from derf_zoo.models import ModelFamily, register_family, register_model
from derf_zoo.models._base import ZooModel
from derf_zoo.models._builder import build_model
from derf_zoo.weights import Layout, Rename

TOY_SITES = ("attn", "mlp", "final")


class Toy(ZooModel):
    norm_sites = TOY_SITES

    def __init__(self, dim: int = 16, depth: int = 1, norm="derf") -> None:
        super().__init__()
        self.backbone = Transformer(dim, depth, num_heads=2, norm=self.resolve_norms(norm))

    def forward(self, x):
        return self.backbone(x)


def toy_derf(pretrained: bool = False, **kwargs) -> Toy:
    """A two-site Transformer used to prove the harness."""
    return build_model(Toy, "toy_derf", pretrained=pretrained, model_args={"norm": "derf"}, data_cfg={}, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def toy_family():
    """The toy family is registered for this module's tests only: a family left in the registry would show up in
    every later test that walks it (the docs' generated tables, the model listings)."""
    from derf_zoo.models import _registry

    upstream = {"upstream": Layout("toy upstream", (Rename("backbone.{rest}", "trunk.{rest}"),))}
    family = register_family(ModelFamily(name="toy", norm_sites=TOY_SITES, task="tests.Toy",
                                         task_type="feature-extraction", layouts=upstream))
    register_model(family="toy", recipe="recipes/toy/toy_derf.yaml", timm=False)(toy_derf)
    yield family
    _registry._MODELS.pop("toy_derf", None)
    _registry._FAMILIES.pop("toy", None)


def test_a_new_family_round_trips_through_the_hub_layer(tmp_path):
    model = derf_zoo.create_model("toy_derf", dim=16).eval()
    folder = model.save_pretrained(tmp_path / "toy")
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "image-classification" not in card
    loaded = derf_zoo.from_pretrained(folder)
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match=r"No released weights for 'toy_derf'.*recipes/toy/toy_derf.yaml"):
        derf_zoo.create_model("toy_derf", pretrained=True)


def test_released_weights_in_a_foreign_layout_load_through_the_familys_layout(hub_cache, seed, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    from safetensors.torch import save_file

    reference = derf_zoo.create_model("toy_derf").eval()
    upstream = {k.replace("backbone.", "trunk."): v for k, v in reference.state_dict().items()}
    folder = tmp_path / "upstream"
    folder.mkdir()
    save_file(upstream, folder / "model.safetensors")
    seed(hub_cache, "someone/toy", folder)
    common = {"name": "toy_derf.up", "repo_id": "someone/toy", "dataset": "d", "produced_by": "p", "license": "l",
              "sha256": sha256_file(folder / "model.safetensors")}  # fmt: skip
    entry = manifest_module.ReleasedWeights(**common, source_format="upstream")
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (entry,))
    loaded = derf_zoo.create_model("toy_derf.up", pretrained=True)
    x = torch.randn(1, 4, 16)
    torch.testing.assert_close(loaded(x), reference(x))
    entry = manifest_module.ReleasedWeights(**common, source_format="timm")  # not a layout this family declares
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (entry,))
    with pytest.raises(ValueError, match=r"Unknown weight layout for the toy family: 'timm'.*derf_zoo, upstream"):
        derf_zoo.create_model("toy_derf.up", pretrained=True)
