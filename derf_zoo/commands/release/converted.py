"""``derf-zoo release converted FAMILY CKPT``: a converted + distilled model, ``<student arch>.from_<norm>_<tag>``.

Takes the last checkpoint of a finished conversion recipe run (``derf-zoo fit -c recipes/vit/
vit_mini_derf_from_ln_fmnist.yaml``), checks that it was distilled from the family's teacher, measures its final
weights with the family's held-out protocol of ``benchmarks/convert.py`` (the same items as the teacher, paired
noise against it) and writes the release with an honest card (teacher, fit, budget, both numbers). Needs a source
checkout: the measures live in ``benchmarks/convert.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from derf_zoo.release import Release, paired_noise, publish

HELP = "measure and release a finished conversion run (a Derf student distilled from a released teacher)"
COMMENT = ("Converted, not trained from scratch: a released LayerNorm/RMSNorm model in the Derf architecture, each "
           "Derf\nfitted to its norm, then distilled (`derf-zoo release converted`; benchmarks/results/convert.md).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", help="the family's key in benchmarks/convert.py (vit, dit, wav2vec2, hyenadna, "
                        "caduceus, gpt2)")  # fmt: skip
    parser.add_argument("ckpt", type=Path, help="last.ckpt of the family's conversion recipe run")


def _benchmark() -> ModuleType:
    """``benchmarks/convert.py`` of the source checkout this package runs from (its families' held-out measures)."""
    import derf_zoo

    path = Path(derf_zoo.__file__).resolve().parents[1] / "benchmarks" / "convert.py"
    if not path.is_file():
        raise FileNotFoundError(f"The converted part measures with benchmarks/convert.py of a source checkout; {path} "
                                "does not exist (install derf_zoo from its repository, editable).")  # fmt: skip
    name = "derf_zoo_benchmark_convert"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def _plan(args: argparse.Namespace) -> tuple[Any, dict, str, str]:
    """(the family, its distillation recipe's config, the recipe's path as cards give it, the release name)."""
    import yaml

    from derf_zoo.recipes import recipe_path

    families = _benchmark().FAMILIES
    if args.family not in families:
        raise ValueError(f"Unknown conversion family {args.family!r}; valid: {', '.join(families)}.")
    family = families[args.family]
    cfg = yaml.safe_load(recipe_path(family.distill_recipe).read_text())
    teacher_arch, teacher_tag = family.teacher.split(".", 1)
    norm = "rmsnorm" if teacher_arch.endswith("rmsnorm") else "ln"
    name = f"{cfg['model']['init_args']['model']}.from_{norm}_{teacher_tag}"
    return family, cfg, f"recipes/{family.distill_recipe}", name


def names(args: argparse.Namespace) -> list[str]:
    return [_plan(args)[3]]


def release(args: argparse.Namespace) -> list[Release]:
    from derf_zoo import create_model
    from derf_zoo.tasks.checkpoint import read_checkpoint
    from derf_zoo.tasks.distill import load_teacher
    from derf_zoo.weights.state_dict import load_into

    family, cfg, recipe, name = _plan(args)
    task_args = cfg["model"]["init_args"]
    ckpt = read_checkpoint(args.ckpt)  # weights-only, checksum verified
    if ckpt.hyper_parameters.get("teacher") != family.teacher:
        raise ValueError(f"{args.ckpt} was not distilled from {family.teacher} (its teacher: "
                         f"{ckpt.hyper_parameters.get('teacher')!r}).")  # fmt: skip
    model = create_model(task_args["model"], **(task_args.get("model_args") or {}))
    load_into(model, ckpt.network_weights()[0], source=str(args.ckpt))
    model.eval()

    values = family.measure(model)
    reference = family.measure(load_teacher(family.teacher))
    value, teacher_value = family.scale * float(values.mean()), family.scale * float(reference.mean())
    noise = family.scale * paired_noise(values, reference)
    metric_key = "acc1" if family.higher_is_better else "loss"
    digits = 2 if family.scale != 1 else 4
    # The card's number as the family's other releases give it: accuracy in percent, losses as they are (DiT's
    # cards give its diffusion loss unscaled, 0.1022, where the benchmark's table shows it x100).
    card_value = round(value, 2) if family.higher_is_better else round(float(values.mean()), 4)
    better = (value - teacher_value) * (1 if family.higher_is_better else -1) > noise
    steps = ckpt.global_step
    produced_by = (
        f"converted by derf_zoo from the released {family.teacher} (its weights copied; each Derf fitted to the "
        f"teacher's norm of the same name on {task_args['fit_norms']} training batches), then distilled for {steps} "
        f"steps with {recipe} (loss = the task's + {task_args['distill_weight']} x distillation, seed "
        f"{cfg.get('seed_everything', 0)}); final weights. {family.metric}: {value:.{digits}f} against the teacher's "
        f"{teacher_value:.{digits}f} on the same {len(values)} held-out items ({value - teacher_value:+.{digits}f}, "
        f"paired noise +-{noise:.{digits}f} at two standard errors: "
        f"{'within' if abs(value - teacher_value) <= noise else 'beyond'} the noise)"
        + (f"; it trained {steps} steps more than its teacher, which is what puts it ahead, not the norm" if better
           else "") + "; benchmarks/results/convert.md has the naive, fitted and from-scratch rows")  # fmt: skip
    return [publish(model, args.dest, name, recipe=recipe, dataset=family.dataset, split=family.split,
                    metrics={metric_key: card_value}, produced_by=produced_by, default=False,
                    eval_protocol=f"{family.metric}; benchmarks/convert.py's protocol for {family.name}",
                    overwrite=args.overwrite)]  # fmt: skip
