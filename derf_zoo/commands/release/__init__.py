"""``derf-zoo release PART``: train (or pick), measure and write the weights ``derf_zoo/checkpoints`` ships.

Each part makes one group of released weights the way the project made them, with the demo's own code, and writes
their Hub folders (config.json, model.safetensors, a card with the measured numbers) and their entries in the
manifest (sha256 pinned), through the YAML library: the manifest's other entries, their order and its comments stay.
A release folder or manifest entry that already exists is refused before any training, unless ``--overwrite``.

Parts: ``gpt2``, ``wav2vec2``, ``dit`` and ``dna`` retrain the demo's models with its recipes and seed; ``fmnist``
picks runs of a finished ``derf-zoo benchmark fmnist``; ``converted`` measures a finished conversion run against its
teacher. (The digits ViTs are the demo's own runs, exported with ``derf-zoo export``.) A new part adds a module
here and a line to :data:`PARTS`: ``HELP``, ``COMMENT`` (the manifest comment above its entries),
``add_arguments(parser)``, ``names(args)`` (what it will release, checked before any work) and ``release(args)``
(a list of :class:`~derf_zoo.release.Release`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from derf_zoo.commands._help import examples
from derf_zoo.commands.release import converted, dit, dna, fmnist, gpt2, wav2vec2

#: The release parts, by name.
PARTS: dict[str, ModuleType] = {"gpt2": gpt2, "wav2vec2": wav2vec2, "dit": dit, "dna": dna, "fmnist": fmnist,
                                "converted": converted}  # fmt: skip


def _package_checkpoints() -> Path:
    """The package's ``checkpoints`` folder: where the manifest's ``embedded: checkpoints/NAME`` entries resolve."""
    from importlib import resources

    return Path(str(resources.files("derf_zoo").joinpath("checkpoints")))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="train or pick, measure and write released weights and their manifest entries",
                       description="Each part makes one group of released weights the way the project made them "
                       "(the demo's recipes, seed and measures) and writes their folders and manifest entries; "
                       "existing ones are refused unless --overwrite.",
                       **examples("derf-zoo release gpt2 --dest /tmp/release   # rebuild the nano GPT-2s elsewhere",
                                  "derf-zoo release dna --families Caduceus --overwrite",
                                  "derf-zoo release fmnist --out outputs/benchmark_fmnist",
                                  "derf-zoo release converted vit outputs/vit_mini_derf_from_ln_fmnist/checkpoints/"
                                  "last.ckpt"))  # fmt: skip
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dest", type=Path, default=None, help="where the release folders go (default: the "
                        "package's derf_zoo/checkpoints, where the manifest's embedded: entries resolve)")
    common.add_argument("--manifest", type=Path, default=None, help="the manifest to add the entries to (default: "
                        "DEST/manifest.yaml)")  # fmt: skip
    common.add_argument("--overwrite", action="store_true", help="replace release folders, export folders and "
                        "manifest entries that already exist (default: refuse, before any training)")
    parts = p.add_subparsers(dest="part", metavar="PART", required=True,
                             help=f"what to release: {', '.join(PARTS)}")  # fmt: skip
    for name, part in PARTS.items():
        q = parts.add_parser(name, parents=[common], help=part.HELP, description=part.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        part.add_arguments(q)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.release import add_entries, check_free

    part = PARTS[args.part]
    args.dest = args.dest or _package_checkpoints()
    manifest = args.manifest or args.dest / "manifest.yaml"
    check_free(args.dest, manifest, part.names(args), args.overwrite)
    releases = part.release(args)
    add_entries(manifest, [r.entry for r in releases], overwrite=args.overwrite, comment=part.COMMENT)
    for r in releases:
        shown = ", ".join(f"{k}: {v}" for k, v in r.entry["metrics"].items())
        print(f"{r.name}: {shown} -> {r.folder}")
    print(f"Manifest: {manifest} ({', '.join(r.name for r in releases)}). After a release, `derf-zoo models --update "
          "docs/models.md docs/families/*.md` refreshes the tables.")  # fmt: skip
    return 0
