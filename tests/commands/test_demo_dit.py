"""The demo's DiT part end to end, shortened: one epoch per norm and a 5-step sampler."""

import pytest
import torch

from derf_zoo.commands.demo import PARTS
from derf_zoo.commands.demo import dit as dit_part


@pytest.mark.slow
def test_dit_demo_part_runs_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dit_part, "SAMPLE_RESPACING", "5")
    monkeypatch.setattr(dit_part, "DRAWS_PER_IMAGE", 1)
    torch.manual_seed(0)
    result = PARTS["dit"].run_part(tmp_path, epochs=1, progress=False)
    assert result.family == "DiT" and not result.higher_is_better
    assert result.derf > 0 and result.baseline_value > 0 and result.noise > 0
    assert result.pictures[0].is_file() and result.pictures[0].stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "judged by the released digits ViT" in printed and "real training digits (reference)" in printed

