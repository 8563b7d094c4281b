"""``derf-zoo norms``: every registered norm with its formula and defaults, and a plot of the functions."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from derf_zoo.commands._figures import pyplot, save
from derf_zoo.commands._help import examples
from derf_zoo.norms.functions import FUNCTIONS
from derf_zoo.norms.registry import describe_norm, get_norm_layer, list_norms

# LayerNorm's ViT-B top-1 from the same table (arXiv 2512.10938 Tab. 7), the baseline the functions beat or not.
_LAYERNORM_VIT_B = 82.3


def norm_rows() -> list[dict[str, str]]:
    """One row per registered norm: name, formula, class, defaults, extra scalars, the paper's ViT-B top-1."""
    rows = []
    for name in list_norms():
        layer = get_norm_layer(name)(4)
        fn = FUNCTIONS.get(name)
        if fn is not None:
            defaults = f"alpha={layer.alpha_init}" + (f", shift={layer.shift_init}" if fn.uses_shift else "")
            top1 = fn.vit_b_top1
        else:
            eps = getattr(layer, "eps", None)
            defaults = f"eps={eps:g}" if eps is not None else "-"
            top1 = _LAYERNORM_VIT_B if name == "layernorm" else None
        scalars = sum(p.numel() for n, p in layer.named_parameters() if n in ("alpha", "shift"))
        rows.append(
            {
                "name": name,
                "formula": describe_norm(name),
                "class": type(layer).__name__,
                "defaults": defaults,
                "scalars": str(scalars),
                "vit_b": f"{top1}" if top1 is not None else "-",
            }
        )
    return rows


def print_table(rows: list[dict[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="derf_zoo norms: point-wise ones compute y = weight * f(u) + bias, u = alpha*x + shift")
    for column, justify in (
        ("name", "left"),
        ("f(u), or y for the others", "left"),
        ("class", "left"),
        ("defaults", "left"),
        ("scalars", "right"),
        ("ViT-B top-1", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "name")
    for r in rows:
        table.add_row(r["name"], r["formula"], r["class"], r["defaults"], r["scalars"], r["vit_b"])
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(
        "Use any name as norm='derf' or with keywords, norm='derf(alpha=1.0, shift=0.1)'. scalars: learnable "
        "alpha/shift per layer. ViT-B top-1: ImageNet-1K, arXiv 2512.10938 Tab. 7 (not measured here)."
    )


def plot_functions(path: Path, span: float = 4.0) -> Path:
    """Draw f(u) and df/du of every point-wise function on [-span, span] into ``path`` (PNG)."""
    plt = pyplot()
    u = torch.linspace(-span, span, 801, dtype=torch.float64)
    # In the paper's ranking (Tab. 7, ViT-B top-1), best first.
    names = sorted(FUNCTIONS, key=lambda n: -(FUNCTIONS[n].vit_b_top1 or 0.0))
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        fn = FUNCTIONS[name]
        ax.axhline(0, color="0.85", lw=0.8)
        ax.axvline(0, color="0.85", lw=0.8)
        ax.plot(u, fn.fn(u), lw=2, color="tab:blue", label="f(u)")
        ax.plot(u, fn.grad(u).clamp(max=2.5), lw=1.2, ls="--", color="tab:orange", label="df/du")
        top1 = f"  ·  ViT-B {fn.vit_b_top1}" if fn.vit_b_top1 else ""
        ax.set_title(f"{name}{top1}", fontsize=10, fontweight="bold" if name == "derf" else "normal")
        ax.set_ylim(-1.3, 2.6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(
        "Point-wise norms: y = weight · f(u) + bias, u = alpha·x + shift "
        f"(ViT-B top-1 from the paper's Tab. 7; LayerNorm {_LAYERNORM_VIT_B})",
        fontsize=11,
    )
    return save(fig, path)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("norms", help="list every norm with its formula and defaults; --plot draws the functions",
                       **examples("derf-zoo norms --plot norms.png"))
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw every point-wise function and its slope")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print_table(norm_rows())
    if args.plot:
        print(f"plot written to {plot_functions(args.plot)}")
    return 0
