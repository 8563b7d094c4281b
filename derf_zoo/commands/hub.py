"""``derf-zoo export | push | download``: Lightning checkpoint -> Hub folder -> Hub, and the cache for offline use."""

from __future__ import annotations

import argparse
from pathlib import Path

from derf_zoo.commands._help import examples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="turn a Lightning checkpoint into a Hub folder (config, safetensors, card)",
                       **examples("derf-zoo export --ckpt outputs/vit_nano_derf_digits/checkpoints/last.ckpt "
                                  "--out hub/vit_nano_derf --eval"))
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint of `derf-zoo fit` (e.g. .../last.ckpt)")
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help="EMA or raw training weights (default: EMA "
                   "when the run averaged its weights, else raw)")  # fmt: skip
    p.add_argument("--eval", action="store_true", help="re-measure the task's metrics on the run's validation split")
    p.add_argument("--name", help="architecture.tag for the card's usage snippet")
    p.add_argument(
        "--recipe", help="the recipe the run used, for the card (e.g. recipes/vit/vit_nano_derf_digits.yaml)"
    )
    p.add_argument("--dataset", help="dataset name for the card (default: the run's DataModule class)")
    p.add_argument("--split", default=None, help="evaluation split named in the card (default: validation)")
    p.add_argument("--license", default="apache-2.0")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(run=run_export)

    p = sub.add_parser("push", help="upload a Hub folder (prints the commit to pin in the manifest)",
                       **examples("derf-zoo push hub/vit_nano_derf --repo-id ORG/vit_nano_derf.digits"))
    p.add_argument("folder", type=Path)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="copy what would be uploaded to a temporary folder instead")
    p.set_defaults(run=run_push)

    p = sub.add_parser("download", help="fetch released weights into the Hub cache, for later offline use",
                       **examples("derf-zoo download --list", "derf-zoo download vit_base_ln.augreg2_in21k_ft_in1k"))
    p.add_argument("name", nargs="?", help="architecture.tag (see --list or list_models(pretrained=True))")
    p.add_argument("--list", action="store_true", help="list the released weights and where each comes from")
    p.add_argument("--cache-dir", type=Path, default=None, help="Hub cache (default $HF_HUB_CACHE)")
    p.set_defaults(run=run_download)


def run_export(args: argparse.Namespace) -> int:
    from derf_zoo.commands._checks import as_flags
    from derf_zoo.tasks.checkpoint import CorruptCheckpointError
    from derf_zoo.tasks.export import export_checkpoint

    if not args.ckpt.is_file():
        what = "a folder" if args.ckpt.is_dir() else "missing"
        raise SystemExit(f"derf-zoo export: --ckpt {args.ckpt} is {what}; give the checkpoint file of a "
                         "`derf-zoo fit` run (e.g. outputs/RUN/checkpoints/last.ckpt).")  # fmt: skip
    try:
        folder, metrics = export_checkpoint(
            args.ckpt, args.out, weights=args.weights, evaluate=args.eval, name=args.name, license=args.license,
            dataset=args.dataset, split=args.split, recipe=args.recipe, overwrite=args.overwrite,
        )  # fmt: skip
    except (ValueError, FileExistsError, CorruptCheckpointError) as err:
        flags = {"weights='ema'": "--weights ema", "weights='raw'": "--weights raw", "evaluate=True": "--eval"}
        raise SystemExit(f"derf-zoo export: {as_flags(str(err), flags)}") from None
    shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()) or "no metric recorded"
    print(f"wrote {folder} ({shown}); next: derf-zoo push {folder} --repo-id ORG/NAME")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from derf_zoo.hub import push_to_hub, sha256_file

    try:
        result = push_to_hub(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    except FileNotFoundError as err:
        raise SystemExit(f"derf-zoo push: {err}") from None
    sha = sha256_file(args.folder / "model.safetensors")
    if args.dry_run:
        print(f"dry run: the upload would hold exactly the files now in {result}")
    else:
        print(f"pushed to {args.repo_id} at commit {result}")
    print(f"manifest fields: repo_id: {args.repo_id}, revision: {result if not args.dry_run else '<commit>'}, "
          f"sha256: {sha}")  # fmt: skip
    return 0


def run_download(args: argparse.Namespace) -> int:
    from derf_zoo.hub import released_weights, weights_file
    from derf_zoo.hub.download import CONFIG_NAME, fetch_file
    from derf_zoo.norms.registry import unknown_name_error

    by_name = {w.name: w for w in released_weights()}
    if args.list:
        for w in by_name.values():
            where = "embedded in the package" if w.embedded else f"hf-hub:{w.repo_id}@{w.revision or 'main'}"
            pinned = "sha256 pinned" if w.sha256 else "no sha256 pinned (loads only with verify=False)"
            print(f"{w.name:<40} {where}; {pinned}")
        return 0
    if args.name is None:
        raise SystemExit("derf-zoo download: name a released weight, or pass --list to see them.")
    if args.name not in by_name:
        raise unknown_name_error("released weight", args.name, by_name)
    weights = by_name[args.name]
    # Fetching unpinned weights into the cache is fine; loading them is what asks for verify=False.
    path = weights_file(weights, cache_dir=args.cache_dir, verify=weights.sha256 is not None)
    if weights.embedded is None and weights.source_format == "derf_zoo":
        fetch_file(weights.repo_id, CONFIG_NAME, revision=weights.revision, cache_dir=args.cache_dir)
    where = "ships inside the package; nothing to download" if weights.embedded else "cached"
    print(f"{weights.name}: {where}: {path}" + (" (sha256 verified)" if weights.sha256 else
                                                " (no sha256 pinned: load it with verify=False)"))  # fmt: skip
    return 0
