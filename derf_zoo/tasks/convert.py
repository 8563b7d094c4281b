"""A pretrained LayerNorm/RMSNorm model -> the same architecture with Derf (or any point-wise norm), fitted.

What ``derf-zoo convert`` runs: build the student (the teacher's architecture and arguments, another ``norm``),
copy every teacher weight into it, fit each point-wise norm to the teacher's norm of the same name on calibration
batches (:func:`derf_zoo.norms.fit_pointwise_norms`), and write a Hub folder whose card says where it came from,
how well each layer was fitted, and that it is not distilled yet (a recipe with ``teacher:`` does that).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from derf_zoo._validate import check_int
from derf_zoo.norms.fit import FitReport, fit_pointwise_norms
from derf_zoo.tasks.checkpoint import import_class
from derf_zoo.tasks.distill import init_student, load_teacher, teacher_references

__all__ = ["calibration_from_recipe", "convert_pretrained", "student_of"]


def student_of(teacher: nn.Module, to: str, exclude: Sequence[str] = ()) -> nn.Module:
    """The teacher's architecture with ``to`` at every norm site but the ``exclude``d ones (which keep the teacher's).

    Raises:
        ValueError: a teacher not built through derf_zoo's registry, or an unknown site in ``exclude``.
    """
    from derf_zoo.models import create_model
    from derf_zoo.models._registry import get_model_entry
    from derf_zoo.norms.registry import resolve_norm_sites

    cfg = getattr(teacher, "pretrained_cfg", None) or {}
    args = getattr(teacher, "model_args", None)
    if not cfg.get("architecture") or args is None:
        raise ValueError(f"convert: the source ({type(teacher).__name__}) was not built through derf_zoo's registry; "
                         "import it first (from_timm, from_official, from_transformers, ...) and use "
                         "convert_norms(model, 'derf', fit=inputs) in Python.")
    sites = get_model_entry(cfg["architecture"]).family.norm_sites
    unknown = [s for s in exclude if s not in sites]
    if unknown:
        raise ValueError(f"convert: unknown norm site(s) {unknown} in exclude; {cfg['architecture']} has "
                         f"{list(sites)}.")
    kept = resolve_norm_sites(args.get("norm", "layernorm"), sites)
    norm = {site: (kept[site] if site in exclude else to) for site in sites}
    norm_arg: Any = to if not exclude else norm
    return create_model(cfg["architecture"], **{**args, "norm": norm_arg})


def calibration_from_recipe(recipe: str | Path, student: nn.Module, batches: int,
                            seed: int = 0) -> tuple[tuple, dict[str, Any]]:  # fmt: skip
    """The first ``batches`` training batches of ``recipe``'s data, as the recipe's task feeds them to its network.

    The batches are drawn with the global RNG seeded by ``seed`` inside a fork (the same images every time, and the
    caller's RNG left as it was).

    Raises:
        FileNotFoundError: no such recipe. ValueError: a recipe without ``data:`` / ``model:`` class paths.
    """
    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"convert: no recipe at {path} (give the YAML whose training data calibrates the fit).")
    cfg = yaml.safe_load(path.read_text()) or {}
    data_cfg, task_cfg = cfg.get("data") or {}, cfg.get("model") or {}
    if "class_path" not in data_cfg or "class_path" not in task_cfg:
        raise ValueError(f"convert: {path} needs data.class_path and model.class_path (a derf_zoo recipe).")
    data = import_class(data_cfg["class_path"], f"the recipe {path}")(**(data_cfg.get("init_args") or {}))
    data.setup("fit")
    task_args = {k: v for k, v in (task_cfg.get("init_args") or {}).items()
                 if k not in ("model", "model_args", "optimizer", "schedule", "teacher", "fit_norms")}  # fmt: skip
    task = import_class(task_cfg["class_path"], f"the recipe {path}")(model=student, **task_args)
    drawn = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in data.train_dataloader():
            drawn.append(batch)
            if len(drawn) == batches:
                break
    if not drawn:
        raise ValueError(f"convert: the training data of {path} yielded no batch.")
    return task.calibration_call(drawn)


def convert_pretrained(
    source: str | nn.Module,
    to: str = "derf",
    *,
    calib: str | Path,
    batches: int = 8,
    exclude: Sequence[str] = (),
    out: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[nn.Module, FitReport, Path | None]:
    """Convert a pretrained model to a point-wise norm with the fit, and optionally write it as a Hub folder.

    Args:
        source: what :func:`derf_zoo.tasks.distill.load_teacher` takes (a released name, a Hub folder or id, a
            ``.ckpt`` of ``derf-zoo fit``) or a registry-built module.
        to: the norm spec of the student (``"derf"``, ``"derf(alpha=1.0)"``, ``"dyt"``).
        calib: a recipe whose training data calibrates the fit (its ``data:`` and its task's inputs).
        batches: training batches the fit sees (all at once, in one forward pass).
        exclude: norm sites that keep the teacher's norm (the report names poorly fitted layers).
        out: the Hub folder to write (refused if it holds files, unless ``overwrite``); None writes nothing.

    Returns:
        (the converted model in eval mode, the fit report, the folder or None).
    """
    check_int("batches", batches, 1, owner="convert")
    from derf_zoo.norms.layers import PointwiseNorm
    from derf_zoo.norms.registry import get_norm_layer

    if not isinstance(get_norm_layer(to)(2), PointwiseNorm):
        raise ValueError(f"convert: --to {to!r} is not a point-wise norm (derf, dyt, ...): it has no parameters to "
                         "fit to the source's norms; no point-wise norm to convert to.")
    teacher = load_teacher(source)
    student = student_of(teacher, to, exclude)
    init_student(student, teacher)
    args, kwargs = calibration_from_recipe(calib, student, batches)
    report = fit_pointwise_norms(student, teacher_references(student, teacher),
                                 forward=lambda net: net(*args, **kwargs))  # fmt: skip
    if not report.layers:
        raise ValueError(f"convert: the calibration forward reached none of the {len(report.not_reached)} point-wise "
                         f"norms of {type(student).__name__} ({', '.join(report.not_reached[:3])}...).")
    student.eval()
    folder = None
    if out is not None:
        from derf_zoo.hub import save_pretrained

        worst = max(report.layers, key=lambda f: f.after)
        named = source if isinstance(source, str) else type(source).__name__
        card = {
            "produced_by": (
                f"converted from {named} by `derf-zoo convert --to {to}`: every weight copied, each of the "
                f"{len(report)} point-wise norms fitted to the source's norm on {batches} training batches of "
                f"{Path(calib).name} (unexplained variance of the source's norm output: mean "
                f"{sum(f.after for f in report.layers) / len(report):.3f}, worst {worst.after:.3f} at {worst.name}). "
                "Not distilled: its accuracy is below the source's until a distillation recipe (teacher:) runs."),
            "weights_kind": "converted (fitted norms, not trained)",
            "recipe": str(calib),
            "metrics": {},
            "task_type": (getattr(teacher, "pretrained_cfg", None) or {}).get("task_type"),
        }
        folder = save_pretrained(student, out, card=card, overwrite=overwrite)
    return student, report, folder
