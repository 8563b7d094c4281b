"""A pre-registered study: several benchmark grids (cells) fixed in a YAML file before any run, run cell by cell.

A cell is one benchmark grid (norms x paired seeds, the suite's recipe) with its own axes: training length
(``epochs``), training-set size (``train_size``) and light augmentation (``max_shift``, ``hflip``). Each cell's
runs live under ``<out>/<cell>/runs/<norm>/seed<k>/`` exactly like a plain ``derf-zoo benchmark`` (so
``--report-only --out <out>/<cell>`` renders one), a finished run is skipped when the study is started again, and
every finished run's record is appended, as it lands, as one JSON line to ``--record`` (flushed and fsynced), so a
study of many hours survives interruptions and its results can be committed while it runs.

The grid file::

    name: generalization_fmnist
    suite: fmnist
    norms: [layernorm, derf_auto, derf]          # keys of derf_zoo.commands.benchmark.grid.NORMS
    cells:
      - {name: full_3ep, epochs: 3, seeds: 5}
      - {name: n6000_60ep_aug, epochs: 60, train_size: 6000, max_shift: 2, hflip: true, seeds: 5}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from derf_zoo.commands.benchmark.grid import SUITES, Run, plan, read_result, resolve_norms, settings

__all__ = ["Cell", "Study", "append_record", "load_study", "study_runs"]

_CELL_KEYS = {"name", "epochs", "seeds", "train_size", "max_shift", "hflip"}


@dataclass(frozen=True)
class Cell:
    """One grid of the study: its name, training length, seeds and data regime."""

    name: str
    epochs: int
    seeds: int
    train_size: int | None = None
    max_shift: int = 0
    hflip: bool = False

    def overrides(self) -> list[str]:
        """The Lightning CLI overrides of this cell (on top of the suite's recipe)."""
        out = [f"--trainer.max_epochs={self.epochs}", f"--data.init_args.max_shift={self.max_shift}",
               f"--data.init_args.hflip={str(self.hflip).lower()}"]  # fmt: skip
        if self.train_size is not None:
            out.append(f"--data.init_args.train_size={self.train_size}")
        return out


@dataclass(frozen=True)
class Study:
    name: str
    suite: str
    norms: dict[str, str]
    cells: tuple[Cell, ...]


def _positive_int(where: str, key: str, value: Any, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: {key} must be an integer >= {low}, got {value!r}.")
    return value


def load_study(path: str | Path) -> Study:
    """Read and check a study file (see the module doc)."""
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not {"name", "suite", "norms", "cells"} <= set(raw):
        raise ValueError(f"{path}: a study needs the keys name, suite, norms and cells.")
    if raw["suite"] not in SUITES:
        raise ValueError(f"{path}: unknown suite {raw['suite']!r}; valid: {', '.join(SUITES)}.")
    norms = resolve_norms(list(raw["norms"]))
    cells = []
    for i, c in enumerate(raw["cells"]):
        where = f"{path}: cell {i}"
        if not isinstance(c, dict) or "name" not in c:
            raise ValueError(f"{where} needs a name.")
        unknown = set(c) - _CELL_KEYS
        if unknown:
            raise ValueError(f"{where} ({c['name']}): unknown key(s) {sorted(unknown)}; valid: {sorted(_CELL_KEYS)}.")
        train_size = c.get("train_size")
        cells.append(Cell(
            name=str(c["name"]), epochs=_positive_int(where, "epochs", c.get("epochs")),
            seeds=_positive_int(where, "seeds", c.get("seeds")),
            train_size=None if train_size is None else _positive_int(where, "train_size", train_size),
            max_shift=_positive_int(where, "max_shift", c.get("max_shift", 0), allow_zero=True),
            hflip=bool(c.get("hflip", False)),
        ))  # fmt: skip
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: cell names must be unique, got {names}.")
    return Study(str(raw["name"]), raw["suite"], norms, tuple(cells))


def study_runs(study: Study, out: Path, recipe: Path, extra: list[str], only: list[str] | None = None
               ) -> list[tuple[Cell, Path, list[str], Run, bool]]:  # fmt: skip
    """Every run of the study in order (cell by cell, seed-major inside a cell): ``(cell, cell folder, overrides,
    run, done)``. A run recorded with other settings is an error (another grid in the same folder)."""
    if only:
        unknown = [n for n in only if n not in {c.name for c in study.cells}]
        if unknown:
            raise ValueError(f"unknown cell(s) {unknown}; this study has {', '.join(c.name for c in study.cells)}.")
    rows = []
    for cell in study.cells:
        if only and cell.name not in only:
            continue
        folder, overrides = out / cell.name, [*cell.overrides(), *extra]
        grid = settings(recipe, overrides)
        for r in plan(study.norms, cell.seeds):
            done = read_result(r.result_file(folder))
            if done is not None and done["settings"] != grid:
                raise ValueError(f"{r.result_file(folder)} was recorded with other settings ({done['settings']}) "
                                 f"than cell {cell.name!r} ({grid}); use another --out.")  # fmt: skip
            rows.append((cell, folder, overrides, r, done is not None))
    return rows


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one finished run as a JSON line, flushed to disk before returning (the study's running log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    # One write on an O_APPEND descriptor: processes sharing the study append whole lines, never interleaved halves.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: wrote {written} of the record's {len(line)} bytes (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)
