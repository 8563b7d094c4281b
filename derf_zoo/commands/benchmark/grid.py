"""The benchmark grid: which norms and seeds, one run each through the Lightning CLI, and the recorded results."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from derf_zoo.models.vit import FASHION_MNIST_DATA_CFG
from derf_zoo.norms.sites import site_alphas
from derf_zoo.recipes import RECIPES_DIR

# The norms a grid compares, as norm-slot specs; derf_auto calibrates alpha to 1/std(input) per layer on the first
# batch (what the digits sweep found necessary at short schedules).
NORMS: dict[str, str] = {
    "layernorm": "layernorm",
    "rmsnorm": "rmsnorm",
    "dyt": "dyt",
    "derf": "derf",
    "derf_auto": "derf(alpha=auto)",
}
# --norms all adds the paper's other searched point-wise functions (PAPER.md §1.4, Tab. 7), each at alpha 0.5.
SEARCHED = (
    "tanh", "arctan", "satursin", "expsign", "exproot", "relsign", "isru", "cubsign", "logsign_clip",
    "logquad_clip", "power23_clip", "linear_clip", "arcsinh_clip", "smoothsign", "saturlog",
)  # fmt: skip
LABELS = {
    "layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "dyt": "DyT", "derf": "Derf", "derf_auto": "Derf (alpha=auto)",
}  # fmt: skip
BASELINE = "layernorm"


@dataclass(frozen=True)
class Suite:
    recipe: str  # relative to derf_zoo/recipes
    description: str


SUITES = {
    "fmnist": Suite(
        "vit/vit_mini_fmnist.yaml",
        "Fashion-MNIST (60,000 train = 54,000 + 6,000 val / 10,000 test, 28x28 grey, 10 classes)",
    ),
}


# ---- the grid ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    norm: str  # key
    spec: str
    seed: int

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.norm / f"seed{self.seed}"

    def result_file(self, out: Path) -> Path:
        return self.folder(out) / "result.json"


def resolve_norms(names: list[str]) -> dict[str, str]:
    """``--norms`` to {key: spec}: the defaults' keys, any registered point-wise name, ``default`` or ``all``."""
    from derf_zoo.norms.registry import list_norms, unknown_name_error

    registered = set(list_norms()) - {"identity"}
    valid = sorted(set(NORMS) | registered | {"all", "default"})
    chosen: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key == "default":
            chosen.update(NORMS)
        elif key == "all":
            chosen.update(NORMS)
            chosen.update({n: n for n in SEARCHED if n in registered})
        elif key in NORMS:
            chosen[key] = NORMS[key]
        elif key in registered:
            chosen[key] = key
        else:
            raise unknown_name_error("benchmark norm", name, valid)
    return chosen


def plan(norms: dict[str, str], seeds: int) -> list[Run]:
    """Seed-major order: every norm's seed 0 first, so a stopped grid already holds complete pairs."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (got {seeds}); the verdicts need 2 or more, 5 is the default.")
    return [Run(key, spec, seed) for seed in range(seeds) for key, spec in norms.items()]


def settings(recipe: Path, overrides: list[str]) -> dict[str, Any]:
    """What makes two runs comparable: the recipe's settings and the overrides (a different one is another grid).

    The recipe is fingerprinted by its parsed content, so editing its comments does not orphan recorded runs.
    """
    import yaml

    content = json.dumps(yaml.safe_load(recipe.read_text()), sort_keys=True)
    return {
        "recipe": str(recipe.relative_to(RECIPES_DIR)) if recipe.is_relative_to(RECIPES_DIR) else str(recipe),
        "recipe_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "overrides": list(overrides),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


#: what a record must hold, and of which type, for the report (``summarise``) and the resume to use it
_RESULT_FIELDS = {"settings": dict, "machine": dict, "norm": str, "spec": str, "seed": int, "test_acc1": float,
                  "eval_train_loss": float, "seconds": float, "alphas": dict, "curves": dict, "parameters": int,
                  "epochs": int, "steps": int, "n_train": int, "n_val": int, "n_test": int}  # fmt: skip


def _record_problem(result: Any) -> str | None:
    """What makes a parsed ``result.json`` unusable, or None."""
    if not isinstance(result, dict) or not result:
        return f"it holds {json.dumps(result)[:40]}, not a run's record"
    for key, kind in _RESULT_FIELDS.items():
        value = result.get(key)
        numeric = kind is float and isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is None or not (numeric or (isinstance(value, kind) and not isinstance(value, bool))):
            return f"{key!r} is {'missing' if key not in result else repr(value)[:40]}, not a {kind.__name__}"
    bad = {site: a for site, a in result["alphas"].items() if isinstance(a, bool) or not isinstance(a, (int, float))}
    return f"'alphas' holds non-numbers {bad}" if bad else None


def read_result(path: Path) -> dict[str, Any] | None:
    """The record of a finished run, or None: not there (not run yet), or unusable (truncated, empty, not numeric:
    named in a warning, and the run counts as not done, so a benchmark run redoes it and a report leaves it out)."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"it cannot be read as JSON ({err})"
    else:
        problem = _record_problem(result)
    if problem is None:
        return result
    warnings.warn(f"Skipping the run record {path}: {problem}. The run counts as not done (delete the file, or run "
                  "the benchmark again to redo it).", stacklevel=2)  # fmt: skip
    return None


# ---- one run -------------------------------------------------------------------------------------------------


def train_one(r: Run, out: Path, recipe: Path, overrides: list[str], record: dict[str, Any]) -> dict[str, Any]:
    """Train, test and record one run; the result file is written last (atomically), so it means 'finished'.

    A run takes minutes: a stopped benchmark redoes its unfinished run from the start (what a killed run left in its
    checkpoint folder moves aside, see :func:`~derf_zoo.release.runs.train_recipe`) rather than resuming mid-way.
    """
    from derf_zoo.release.runs import train_recipe

    folder = r.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run = train_recipe(recipe, folder, progress=False, curves=("train/loss_epoch", "val/acc1", "val/loss"), extra_args=[
        f"--seed_everything={r.seed}", f"--model.init_args.model_args.norm={r.spec}", "--trainer.logger=false",
        "--checkpoint.save_last=false", "--checkpoint.save_top_k=0", *overrides,
    ])  # fmt: skip
    cli, fit_seconds = run.cli, run.seconds
    val = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    (test,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    dm = cli.datamodule
    # The generalization gap (train - test top-1) needs the training accuracy in evaluation mode, on the training
    # images without augmentation (the same images as the evaluation-mode train loss).
    train_acc1 = _accuracy(cli.model.model, dm.train_eval_dataloader())
    result = {
        **record,
        "norm": r.norm,
        "spec": r.spec,
        "seed": r.seed,
        "test_acc1": float(test["test/acc1"]),
        "test_loss": float(test["test/loss"]),
        "val_acc1": val.get("val/acc1"),
        "val_loss": val.get("val/loss"),
        "eval_train_loss": float(cli.model.eval_mode_train_loss),
        "eval_train_acc1": train_acc1,
        "alphas": site_alphas(cli.model.model),
        "n_train": len(dm.train_eval_set),
        "n_val": len(dm.val_set),
        "n_test": len(dm.test_set) if getattr(dm, "test_set", None) is not None else len(dm.val_set),
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "parameters": sum(p.numel() for p in cli.model.model.parameters()),
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - start,
        "curves": run.curves,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    net = cli.model.model
    net.pretrained_cfg = {**getattr(net, "pretrained_cfg", {}), **FASHION_MNIST_DATA_CFG}
    net.save_pretrained(
        folder / "model", overwrite=True,  # a run stopped after this line is redone whole
        metrics={"acc1": 100 * result["test_acc1"], "eval_mode_train_loss": result["eval_train_loss"]},
        dataset="fashion_mnist", split="test (official 10,000 images)", recipe=record["settings"]["recipe"],
        produced_by=f"derf-zoo benchmark fmnist ({r.spec}, seed {r.seed}); final-epoch weights",
    )  # fmt: skip
    tmp = r.result_file(out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(r.result_file(out))
    del cli
    gc.collect()
    return result


def _accuracy(net: Any, loader: Any) -> float:
    """Top-1 (fraction) of ``net`` in evaluation mode over ``loader``, on the network's device."""
    import torch

    device = next(net.parameters()).device
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((net(x.to(device)).argmax(-1).cpu() == y).sum())
            total += len(y)
    return correct / max(total, 1)


# ---- results -----------------------------------------------------------------------------------------------


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every finished run recorded under ``out`` (any norms, any seeds)."""
    found = [read_result(p) for p in sorted((out / "runs").glob("*/seed*/result.json"))]
    return [r for r in found if r is not None]
