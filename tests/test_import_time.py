"""The root package is lazy (PEP 562): the norm slot imports without timm, Lightning or any model family.

``from derf_zoo.norms import Derf`` cost ~2.4 s over ``import torch`` when the root imported every family
(timm pulls torchvision and torch._dynamo); the norms alone cost ~0.05 s.
"""

import json
import subprocess
import sys
from pathlib import Path

import derf_zoo

HEAVY = ("timm", "lightning", "pytorch_lightning", "derf_zoo.models", "transformers", "diffusers", "torchvision")

# Run in a fresh interpreter: this test process has long imported everything.
_PROBE = """
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import derf_zoo.norms
from derf_zoo import Derf, DyT, get_norm_layer
t2 = time.perf_counter()
print(json.dumps({{"torch_s": t1 - t0, "norms_s": t2 - t1, "loaded": sorted(sys.modules)}}))
"""


def _probe() -> dict:
    root = str(Path(derf_zoo.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=root)], capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_norms_import_loads_no_family_and_stays_light():
    probe = _probe()
    loaded = set(probe["loaded"])
    assert not [m for m in HEAVY if m in loaded], f"import derf_zoo.norms loaded {[m for m in HEAVY if m in loaded]}"
    assert not any(m.startswith("derf_zoo.models") or m.startswith("derf_zoo.tasks") for m in loaded)
    # Relative to torch itself, so that a loaded machine slows both: the norms add ~2% of torch's import time;
    # the old eager root added ~125% (timm -> torchvision -> torch._dynamo). 1 s floor for a fast torch import.
    bound = max(1.0, 0.5 * probe["torch_s"])
    took = f"derf_zoo.norms took {probe['norms_s']:.2f} s over torch's {probe['torch_s']:.2f} s"
    assert probe["norms_s"] < bound, took


def test_every_public_name_resolves_and_is_listed():
    listed = dir(derf_zoo)
    for name in derf_zoo.__all__:
        assert name in listed, name
        assert getattr(derf_zoo, name) is not None, name
    assert derf_zoo.vit_nano_derf is derf_zoo.models.vit.vit_nano_derf
    # __all__ is written out for linters and readers; the lazy table must serve exactly those names.
    assert set(derf_zoo.__all__) == {"__version__", *derf_zoo._LAZY}


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'vit_huge_derf'"):
        derf_zoo.vit_huge_derf  # noqa: B018
    assert not hasattr(derf_zoo, "not_a_name")


def test_a_subpackage_loads_on_attribute_access():
    # `import derf_zoo; derf_zoo.models.vit...` worked when the root imported the families; it still does.
    code = "import derf_zoo, sys; assert 'derf_zoo.models' not in sys.modules; print(derf_zoo.models.vit.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(derf_zoo.__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "derf_zoo.models.vit", out.stderr


def test_timm_knows_the_zoos_names_once_the_models_are_loaded():
    # The documented form (docs/families/vit.md): a bare `import derf_zoo` no longer registers with timm.
    code = ("import derf_zoo.models, timm; m = timm.create_model('vit_nano_derf'); "
            "print(type(m).__name__, timm.data.resolve_model_data_config(m)['input_size'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(derf_zoo.__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.split() == ["VisionTransformer", "(1,", "16,", "16)"], out.stderr
