"""The benchmark's statistics and outputs: per-norm summaries, paired verdicts, the table, the page and the plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from derf_zoo.commands.benchmark.grid import BASELINE, LABELS, NORMS, load_results

# Two-sided 95% critical values of Student's t by degrees of freedom (beyond 30: the normal's 1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per norm: test top-1 mean and SE over seeds, the paired difference with LayerNorm, train loss, alphas."""
    by_norm: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_norm.setdefault(r["norm"], {})[r["seed"]] = r
    base = by_norm.get(BASELINE, {})
    order = [k for k in NORMS if k in by_norm] + sorted(k for k in by_norm if k not in NORMS)
    rows = []
    for key in order:
        runs = by_norm[key]
        seeds = sorted(runs)
        acc = [runs[s]["test_acc1"] for s in seeds]
        loss = [runs[s]["eval_train_loss"] for s in seeds]
        row: dict[str, Any] = {
            "norm": key, "label": LABELS.get(key, key), "spec": runs[seeds[0]]["spec"], "seeds": seeds,
            "acc": _mean_se(acc), "train_loss": _mean_se(loss),
            "seconds": statistics.fmean(runs[s]["seconds"] for s in seeds),
        }  # fmt: skip
        sites = sorted({site for s in seeds for site in runs[s]["alphas"]}, key=["attn", "mlp", "final"].index)
        row["alphas"] = {site: statistics.fmean(runs[s]["alphas"][site] for s in seeds) for site in sites}
        paired = [s for s in seeds if s in base]
        if key != BASELINE and paired:
            diffs = [runs[s]["test_acc1"] - base[s]["test_acc1"] for s in paired]
            mean, se = _mean_se(diffs)
            row["diff"] = {"mean": mean, "se": se, "n": len(diffs), "wins": sum(d > 0 for d in diffs),
                           "half_width": t95(len(diffs) - 1) * se if len(diffs) > 1 else float("nan")}  # fmt: skip
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per norm: better or worse than LayerNorm beyond the noise, or not separated from it."""
    sentences = []
    for row in rows:
        d = row.get("diff")
        if row["norm"] == BASELINE:
            continue
        if d is None:
            sentences.append(f"{row['label']}: no LayerNorm run with the same seed yet, so no comparison.")
            continue
        pts = f"{100 * d['mean']:+.2f} points"
        if d["n"] < 2:
            sentences.append(f"{row['label']}: {pts} against LayerNorm on one seed; two or more seeds are needed to "
                             "tell that from the noise.")  # fmt: skip
            continue
        lo, hi = 100 * (d["mean"] - d["half_width"]), 100 * (d["mean"] + d["half_width"])
        detail = f"{pts} ± {100 * d['se']:.2f} (SE) over {d['n']} paired seeds, 95% interval {lo:+.2f} to {hi:+.2f}"
        if lo > 0:
            sentences.append(f"{row['label']} beats LayerNorm beyond the noise: {detail}.")
        elif hi < 0:
            sentences.append(f"{row['label']} is worse than LayerNorm beyond the noise: {detail}.")
        else:
            sentences.append(f"{row['label']} does not beat LayerNorm beyond the noise: {detail} "
                             f"(ahead on {d['wins']} of {d['n']} seeds).")  # fmt: skip
    return sentences


def _fmt(mean: float, se: float, scale: float = 100.0, digits: int = 2, sign: bool = False) -> str:
    body = f"{scale * mean:+.{digits}f}" if sign else f"{scale * mean:.{digits}f}"
    return body if math.isnan(se) else f"{body} ± {scale * se:.{digits}f}"


def _binomial_se(rows: list[dict[str, Any]], n: int) -> float:
    p = rows[0]["acc"][0]
    return math.sqrt(p * (1 - p) / n)


def markdown(rows: list[dict[str, Any]], results: list[dict[str, Any]], title: str) -> str:
    """The results page: settings, machine, the table, one sentence per norm."""
    first = results[0]
    lines = [f"# {title}", ""]
    lines.append(
        f"Recipe `derf_zoo/recipes/{first['settings']['recipe']}` "
        f"(settings sha256 {first['settings']['recipe_sha256'][:12]}), "
        f"overrides {first['settings']['overrides'] or 'none'}; {first['parameters']:,} parameters, "
        f"{first['epochs']} epochs ({first['steps']} steps); {first['n_train']:,} train / {first['n_val']:,} val / "
        f"{first['n_test']:,} test images. Same recipe for every norm; only the norm and the seed change. "
        "Seeds are paired: seed k of every norm starts from the same weights and sees the same batch order."
    )
    m = first["machine"]
    lines += ["", f"Machine: {m.get('gpu') or m['cpu']}, {m['cpu_count']} CPU cores, {m['torch_threads']} torch "
              f"thread(s), torch {m['torch']}, {m['platform']}.", ""]  # fmt: skip
    lines.append("| norm | spec | seeds | test top-1 % (mean ± SE) | Δ vs LayerNorm, paired (points ± SE) "
                 "| eval-mode train loss | final alpha (attn / mlp / final) | time per run |")  # fmt: skip
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in rows:
        d = row.get("diff")
        diff = "—" if d is None else f"{_fmt(d['mean'], d['se'], sign=True)} (n={d['n']})"
        alphas = " / ".join(f"{a:.2f}" for a in row["alphas"].values()) or "—"
        lines.append(
            f"| {row['label']} | `{row['spec']}` | {len(row['seeds'])} | {_fmt(*row['acc'])} | {diff} | "
            f"{_fmt(*row['train_loss'], scale=1.0, digits=4)} | {alphas} | {row['seconds'] / 60:.1f} min |"
        )
    lines += ["", *[f"- {s}" for s in verdicts(rows)], ""]
    lines.append(
        "Test top-1 is on the official 10,000 test images, measured once after the last epoch (no model selection "
        "on test). Eval-mode train loss: the paper's §6.1 protocol, cross entropy in eval mode over the "
        "training split without augmentation. The 95% interval is a t interval over the paired per-seed differences: "
        "it covers seed-to-seed variation (initialisation and batch order) on this fixed test set, not the test "
        f"set's own sampling noise (a binomial standard error of {100 * _binomial_se(rows, first['n_test']):.2f} "
        f"points for one model at this accuracy on {first['n_test']:,} images)."
    )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    from derf_zoo.commands._figures import pyplot, save

    plt = pyplot()
    fig, (ax_loss, ax_acc, ax_diff) = plt.subplots(1, 3, figsize=(16, 4.4))
    for row in rows:
        runs = [r for r in results if r["norm"] == row["norm"]]
        for ax, key, scale in ((ax_loss, "train/loss_epoch", 1.0), (ax_acc, "val/acc1", 100.0)):
            n = min(len(r["curves"][key]) for r in runs)
            if n == 0:
                continue
            mean = [scale * statistics.fmean(r["curves"][key][i] for r in runs) for i in range(n)]
            ax.plot(range(1, n + 1), mean, marker="o", lw=1.6, label=f"{row['label']} ({len(runs)} seeds)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean over seeds)", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="val top-1 % (mean over seeds)", title="validation accuracy")
    compared = [row for row in rows if row.get("diff")]
    ys = range(len(compared))
    ax_diff.errorbar([100 * row["diff"]["mean"] for row in compared], ys,
                     xerr=[0 if math.isnan(row["diff"]["half_width"]) else 100 * row["diff"]["half_width"]
                           for row in compared], fmt="o", capsize=4)  # fmt: skip
    for row in compared:
        runs = {r["seed"]: r for r in results if r["norm"] == row["norm"]}
        base = {r["seed"]: r for r in results if r["norm"] == BASELINE}
        y = compared.index(row)
        ax_diff.scatter([100 * (runs[s]["test_acc1"] - base[s]["test_acc1"]) for s in runs if s in base],
                        [y + 0.15] * sum(s in base for s in runs), s=10, color="grey", alpha=0.7)  # fmt: skip
    ax_diff.axvline(0, color="black", lw=1)
    ax_diff.set_yticks(list(ys), [row["label"] for row in compared])
    ax_diff.invert_yaxis()  # the table's order, top to bottom
    ax_diff.set(xlabel="test top-1 minus LayerNorm's, same seed (points)",
                title="paired difference with LayerNorm\n(bars: 95% interval; grey dots: seeds)")  # fmt: skip
    for ax in (ax_loss, ax_acc, ax_diff):
        ax.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return save(fig, path)


def render(out: Path, title: str | None = None, console: Any = None) -> Path | None:
    """Write results.md, results.json and curves.png under ``out`` from the finished runs, and print the table."""
    results = load_results(out)
    if not results:
        print(f"No finished runs under {out / 'runs'} yet.")
        return None
    grids = {json.dumps(r["settings"], sort_keys=True) for r in results}
    if len(grids) > 1:
        raise ValueError(f"{out} holds runs of {len(grids)} different settings (recipe or overrides); render "
                         "each grid from its own --out folder.")  # fmt: skip
    title = title or f"Norms on Fashion-MNIST: {results[0]['settings']['recipe']}"
    rows = summarise(results)
    page = markdown(rows, results, title)
    (out / "results.md").write_text(page)
    (out / "results.json").write_text(json.dumps({"rows": rows, "verdicts": verdicts(rows)}, indent=2) + "\n")
    figure = plot(results, rows, out / "curves.png", title)
    _print(rows, title, console)
    print(f"\nWritten: {out / 'results.md'}, {out / 'results.json'}, {figure}")
    return out / "results.md"


def _print(rows: list[dict[str, Any]], title: str, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name, justify in (("norm", "left"), ("seeds", "right"), ("test top-1 %", "right"),
                          ("Δ vs LN (paired)", "right"), ("eval-mode train loss", "right"),
                          ("final alpha", "right"), ("min/run", "right")):  # fmt: skip
        table.add_column(name, justify=justify)
    for row in rows:
        d = row.get("diff")
        table.add_row(
            row["label"], str(len(row["seeds"])), _fmt(*row["acc"]),
            "—" if d is None else _fmt(d["mean"], d["se"], sign=True),
            _fmt(*row["train_loss"], scale=1.0, digits=4),
            " / ".join(f"{a:.2f}" for a in row["alphas"].values()) or "—", f"{row['seconds'] / 60:.1f}",
        )  # fmt: skip
    console = console or Console(width=max(Console().width, 120))
    console.print(table)
    for sentence in verdicts(rows):
        console.print("- " + sentence)
