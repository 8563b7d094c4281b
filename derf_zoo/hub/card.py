"""Model cards: Hub front matter (library, tags, license, datasets, model-index) and a readable body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from derf_zoo.norms.sites import site_alphas

__all__ = ["model_card"]

CITATION = """@misc{derf2025,
  title         = {Stronger Normalization-Free Transformers},
  eprint        = {2512.10938},
  archivePrefix = {arXiv},
  year          = {2025}
}"""


def _fill(template: str, cfg: Mapping[str, Any], model: nn.Module, name: str | None) -> str:
    """A family's card text with its fields filled: ``{name}`` (the released name or a folder placeholder),
    ``{input_size}``, ``{cfg[key]}`` (the data config) and ``{model.attr}`` (the built model)."""
    return template.format(name=name or "path/to/this/folder", input_size=tuple(cfg.get("input_size", ())), cfg=cfg,
                           model=model)  # fmt: skip


def _input_line(cfg: Mapping[str, Any], model: nn.Module, name: str | None = None) -> str:
    """The card's Input line: the family's ``card_input`` where it sets one, else an image's size and preprocessing."""
    if "card_input" in cfg:
        return f"- **Input:** {_fill(cfg['card_input'], cfg, model, name)}\n"
    if "input_size" not in cfg:
        return ""
    return (f"- **Input:** {tuple(cfg['input_size'])}, mean {tuple(cfg.get('mean', ()))}, "
            f"std {tuple(cfg.get('std', ()))}, crop {cfg.get('crop_pct')}, {cfg.get('interpolation')} interpolation\n")


def _example_call(cfg: Mapping[str, Any], model: nn.Module, name: str | None = None) -> str:
    """The Usage lines after loading: the family's ``card_example`` where it sets one, else a call on random input
    of ``input_size``."""
    if "card_example" in cfg:
        return "\n" + _fill(cfg["card_example"], cfg, model, name)
    if "input_size" not in cfg:
        return ""
    return f"\noutput = model(torch.randn(1, *{tuple(cfg['input_size'])}))"


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_card(
    model: nn.Module,
    config: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    recipe: str | None = None,
    weights_kind: str | None = None,
    produced_by: str | None = None,
    license: str = "apache-2.0",
    eval_protocol: str | None = None,
    task_type: str | None = None,
) -> str:
    """The README.md of a Hub folder, written without Jinja2 (huggingface_hub's templates need it).

    The front matter parses with ``huggingface_hub.ModelCard``; with metrics and a dataset it holds a
    ``model-index`` so the Hub shows the result. ``task_type`` (a Hugging Face pipeline tag) comes from the task
    that trained the weights or, for a model saved from Python, from its family (``config["task_type"]``);
    ``metrics`` are the values as that task reports them (accuracies in percent). The Input line and the usage
    example come from the family's data config (``card_input``, ``card_example``: see :func:`_fill` for their
    fields) or, without them, describe an image model.
    """
    from huggingface_hub import EvalResult, ModelCardData

    architecture = config["architecture"]
    task_type = task_type or config.get("task_type")
    title = repo_id or name or architecture
    norm = config["model_args"].get("norm")
    eval_results = None
    if metrics and dataset:
        eval_results = [
            EvalResult(task_type=task_type or "other", dataset_type=dataset, dataset_name=dataset,
                       dataset_split=split, metric_type=key, metric_name=key, metric_value=value)
            for key, value in metrics.items()
        ]  # fmt: skip
    data = ModelCardData(
        library_name="derf_zoo", license=license, pipeline_tag=task_type, model_name=title,
        tags=[t for t in ("derf_zoo", task_type, "normalization-free", architecture) if t],
        datasets=[dataset] if dataset else None, metrics=list(metrics) if metrics else None, eval_results=eval_results,
    )  # fmt: skip
    alphas = site_alphas(model)
    alpha_text = ", ".join(f"{site} {value:.3g}" for site, value in alphas.items()) or "none (no point-wise norm)"
    # the family's card texts (card_input, card_example) live in the model's data config, not in config.json
    live = getattr(model, "pretrained_cfg", None) or {}
    cfg = {**config.get("pretrained_cfg", {}), **{k: v for k, v in live.items() if k.startswith("card_")}}
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" for k, v in (metrics or {}).items()) or "| - | not measured |"
    if name:
        load = f'derf_zoo.create_model("{name}", pretrained=True)'
    else:
        load = f'derf_zoo.from_pretrained("{repo_id or "path/to/this/folder"}")'
    body = f"""
# {title}

A `{architecture}` model ({task_type or "task not recorded"}) made with derf_zoo, the model zoo for
normalization-free Transformers (arXiv 2512.10938). Its norm layers are `{norm}`; Derf is
`weight * erf(alpha * x + shift) + bias`.

## Model details

- **Architecture:** `{architecture}`, {_count(model) / 1e6:.3f} M parameters
{_input_line(cfg, model, name)}- **Norm:** `{norm}`; mean alpha per site: {alpha_text}
- **Weights:** {weights_kind or "as trained"}
- **Produced by:** {produced_by or "derf_zoo"}
- **Recipe:** {f"`{recipe}`" if recipe else "-"}

## Evaluation

Dataset: {dataset or "-"}{f", split {split}" if split else ""}. {eval_protocol or ""}

| metric | value |
|---|---|
{metric_lines}

## Usage

```python
import derf_zoo, torch
model = {load}{_example_call(cfg, model, name)}
```

## Citation

```bibtex
{CITATION}
```
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"
