"""Release a converted + distilled model: `<student arch>.from_<teacher tag>` from a finished conversion recipe run.

Measures the run's final weights with the family's held-out protocol of ``benchmarks/convert.py`` (the same items
as the teacher, paired noise against it), writes the Hub folder with an honest card (teacher, fit, budget, both
numbers) and prints the manifest entry to paste into ``derf_zoo/checkpoints/manifest.yaml`` (sha256 pinned).

    derf-zoo fit -c recipes/vit/vit_mini_derf_from_ln_fmnist.yaml
    python scripts/release_converted.py vit outputs/vit_mini_derf_from_ln_fmnist/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from convert import FAMILIES  # benchmarks/convert.py: the families' held-out measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=list(FAMILIES))
    parser.add_argument("ckpt", type=Path, help="last.ckpt of the family's conversion recipe run")
    parser.add_argument("--dest", type=Path, default=Path("derf_zoo/checkpoints"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    from derf_zoo import create_model
    from derf_zoo.hub.state_dict import load_into
    from derf_zoo.recipes import recipe_path
    from derf_zoo.tasks.checkpoint import load_lightning_checkpoint, network_weights, verify_checksum
    from derf_zoo.tasks.distill import load_teacher

    family = FAMILIES[args.family]
    recipe = f"recipes/{family.distill_recipe}"
    cfg = yaml.safe_load(recipe_path(family.distill_recipe).read_text())
    task_args = cfg["model"]["init_args"]
    ckpt = load_lightning_checkpoint(args.ckpt)
    verify_checksum(ckpt, str(args.ckpt))
    if ckpt["hyper_parameters"].get("teacher") != family.teacher:
        raise SystemExit(f"{args.ckpt} was not distilled from {family.teacher}.")
    arch = task_args["model"]
    model = create_model(arch, **(task_args.get("model_args") or {}))
    load_into(model, network_weights(ckpt, None)[0], source=str(args.ckpt))
    model.eval()
    teacher_tag = family.teacher.split(".", 1)[1]
    teacher_arch = family.teacher.split(".", 1)[0]
    norm = "rmsnorm" if teacher_arch.endswith("rmsnorm") else "ln"
    name = f"{arch}.from_{norm}_{teacher_tag}"

    values = family.measure(model)
    reference = family.measure(load_teacher(family.teacher))
    diff = values - reference
    value, teacher_value = family.scale * float(values.mean()), family.scale * float(reference.mean())
    noise = family.scale * 2 * float(diff.std() / math.sqrt(len(diff)))
    metric_key = "acc1" if family.higher_is_better else "loss"
    digits = 2 if family.scale != 1 else 4
    # The card's number as the family's other releases give it: accuracy in percent, losses as they are (DiT's
    # cards give its diffusion loss unscaled, 0.1022, where the benchmark's table shows it x100).
    card_value = round(value, 2) if family.higher_is_better else round(float(values.mean()), 4)
    better = (value - teacher_value) * (1 if family.higher_is_better else -1) > noise
    steps = ckpt.get("global_step")
    produced_by = (
        f"converted by derf_zoo from the released {family.teacher} (its weights copied; each Derf fitted to the "
        f"teacher's norm of the same name on {task_args['fit_norms']} training batches), then distilled for {steps} "
        f"steps with {recipe} (loss = the task's + {task_args['distill_weight']} x distillation, seed "
        f"{cfg.get('seed_everything', 0)}); final weights. {family.metric}: {value:.{digits}f} against the teacher's "
        f"{teacher_value:.{digits}f} on the same {len(values)} held-out items ({value - teacher_value:+.{digits}f}, "
        f"paired noise +-{noise:.{digits}f} at two standard errors: "
        f"{'within' if abs(value - teacher_value) <= noise else 'beyond'} the noise)"
        + (f"; it trained {steps} steps more than its teacher, which is what puts it ahead, not the norm" if better
           else "") + "; benchmarks/results/convert.md has the naive, fitted and from-scratch rows")
    folder = model.save_pretrained(
        args.dest / name, name=name, metrics={metric_key: card_value},
        dataset=family.dataset, split=family.split, recipe=recipe,
        produced_by=produced_by, eval_protocol=f"{family.metric}; benchmarks/convert.py's protocol for {family.name}",
        license="apache-2.0", overwrite=args.overwrite)  # fmt: skip
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    entry = {"name": name, "embedded": f"checkpoints/{name}", "sha256": sha, "recipe": recipe,
             "dataset": family.dataset, "split": family.split,
             "metrics": {metric_key: card_value}, "produced_by": produced_by,
             "license": "apache-2.0", "default": False}  # fmt: skip
    print(yaml.safe_dump([entry], sort_keys=False, width=118, allow_unicode=True))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
