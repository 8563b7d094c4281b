"""The pre-registered study's report: the verdict rule the grid file fixed, applied per cell, from the records."""

import json

import pytest

from derf_zoo.commands.benchmark.study import Cell, Study
from derf_zoo.commands.benchmark.study_report import read_records, study_cells, study_markdown, write_study_report

NORMS = {"layernorm": "layernorm", "derf_auto": "derf(alpha=auto)", "derf": "derf"}
MACHINE = {"cpu": "test cpu", "torch_threads": 1, "torch": "2"}


def _record(cell, norm, seed, test, train_loss, train_acc=0.9):
    return {"cell": cell, "norm": norm, "seed": seed, "test_acc1": test, "eval_train_acc1": train_acc,
            "eval_train_loss": train_loss, "machine": MACHINE, "settings": {"recipe": "vit/vit_mini_fmnist.yaml"}}


def _study():
    return Study("gen", "fmnist", NORMS, (Cell("full_3ep", 3, 3), Cell("n6000_60ep", 60, 3, train_size=6000)))


def _records():
    out = []
    for seed, jitter in enumerate((0.000, 0.001, -0.001)):
        out.append(_record("full_3ep", "layernorm", seed, 0.86 + jitter, 0.30))
        out.append(_record("full_3ep", "derf_auto", seed, 0.87 + jitter + 0.0005 * seed, 0.33))  # better, higher loss
        out.append(_record("full_3ep", "derf", seed, 0.85 + jitter - 0.0005 * seed, 0.35))  # worse
    out.append(_record("n6000_60ep", "layernorm", 0, 0.80, 0.1))
    out.append(_record("n6000_60ep", "derf", 0, 0.81, 0.2))
    return out


def test_the_pre_registered_rule_decides_each_cell():
    cells = {c["name"]: c for c in study_cells(_study(), _records())}
    full = cells["full_3ep"]["compared"]
    assert full["derf_auto"]["verdict"] == "supported"
    assert full["derf_auto"]["acc"]["mean"] == pytest.approx(0.01 + 0.0005)
    assert full["derf"]["verdict"] == "contradicted (Derf worse)"
    assert cells["n6000_60ep"]["compared"]["derf"]["verdict"] == "incomplete (1 of 3 paired seeds)"
    assert cells["full_3ep"]["norms"]["layernorm"]["gap"][0] == pytest.approx(0.9 - 0.86)


def test_better_with_a_lower_train_loss_is_not_called_generalization():
    records = [_record("full_3ep", n, s, (0.87 if n != "layernorm" else 0.86) + 0.001 * s, 0.2 if n != "layernorm"
                       else 0.3) for s in range(3) for n in NORMS]  # fmt: skip
    cell = study_cells(_study(), records)[0]
    assert cell["compared"]["derf"]["verdict"].startswith("Derf better, but not through generalization")


def test_the_page_reports_every_cell_and_how_far_the_study_got(tmp_path):
    study, records = _study(), _records()
    page = study_markdown(study, study_cells(study, records), records, "gen.png")
    assert "Runs finished: 11 of 18" in page and "## full_3ep" in page and "## n6000_60ep: 6,000 images" in page
    assert "**supported**" in page and "**contradicted (Derf worse)**" in page
    records_file = tmp_path / "records.jsonl"
    records_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    written = write_study_report(study, records_file, tmp_path)
    assert written.read_text().startswith("# Pre-registered study `gen`") and (tmp_path / "gen.png").stat().st_size


def test_a_cut_record_line_is_named(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(_records()[0]) + "\n" + '{"cell": "full_3ep", "no')
    with pytest.raises(ValueError, match=r"records.jsonl:2 is not a JSON record"):
        read_records(path)
