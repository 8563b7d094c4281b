"""The demo's speech part: a one-epoch run of both recipes prints the table and verdict and draws the curves."""

import math

import pytest
import torch

from derf_zoo.commands.demo import PARTS, speech
from derf_zoo.commands.demo.part import verdict
from derf_zoo.release import paired_noise


def _clips(per_clip_losses, frames=10.0):
    loss = torch.tensor(per_clip_losses, dtype=torch.float64)
    ones = torch.ones_like(loss)
    return speech.ClipLosses(loss=loss, frames=frames * ones, perplexity=ones, code_perplexity=ones)


def test_the_noise_pairs_per_clip_losses():
    # two clips x two draws each; per-clip differences (draws pooled by masked frames): 0.1, 0.3
    a = _clips([[1.0, 1.2], [2.0, 2.2]])
    b = _clips([[1.0, 1.0], [1.8, 1.8]])
    assert a.per_clip().tolist() == pytest.approx([1.1, 2.1]) and a.mean == pytest.approx(1.6)
    assert paired_noise(a.per_clip(), b.per_clip()) == pytest.approx(2 * math.sqrt(0.02) / math.sqrt(2))
    assert paired_noise(_clips([[1.0]]).per_clip(), _clips([[2.0]]).per_clip()) == math.inf  # one clip: no estimate
    # a masked-frame-weighted mean within a clip
    weighted = speech.ClipLosses(torch.tensor([[1.0, 4.0]]), torch.tensor([[3.0, 1.0]]), torch.ones(1, 2),
                                 torch.ones(1, 2))  # fmt: skip
    assert weighted.per_clip().tolist() == pytest.approx([7 / 4])


def test_clip_losses_are_fixed_by_the_seeds():
    from derf_zoo.models import create_model

    torch.manual_seed(0)
    model = create_model("wav2vec2_tiny_ln")
    clips = [torch.randn(8000), torch.randn(6400)]
    first, again = speech.clip_losses(model, clips, seeds=(0, 1)), speech.clip_losses(model, clips, seeds=(0, 1))
    assert first.loss.shape == (2, 2) and torch.equal(first.loss, again.loss) and (first.frames > 0).all()
    other = speech.clip_losses(model, clips, seeds=(2, 3))
    assert not torch.equal(first.loss, other.loss)
    assert len(speech.validation_clips()) == 4


@pytest.mark.slow
def test_speech_part_runs_and_reports(tmp_path, capsys):
    assert PARTS["wav2vec2"] is speech
    result = speech.run_part(tmp_path, epochs=1, progress=False)
    text = capsys.readouterr().out
    assert "wav2vec 2.0 tiny on real speech" in text and "4 held-out clips x 8 fixed mask draws" in text
    assert verdict(result) in text and "bits per masked frame" in text
    assert result.family == "wav2vec 2.0" and result.metric == "val loss (bits)" and not result.higher_is_better
    # after one epoch (4 updates) both models sit near chance: log2(21) bits for 20 negatives, plus the rest
    assert 3.0 < result.derf < 8.0 and 3.0 < result.baseline_value < 8.0 and result.derf != result.baseline_value
    assert 0 < result.noise < 2.0
    (picture,) = result.pictures
    assert picture == tmp_path / "curves.png" and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tag in ("derf", "ln"):
        assert (tmp_path / f"wav2vec2_tiny_{tag}_speech" / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(ValueError, match="no recipe for norm"):
        speech.run_part(tmp_path, norms=["derf", "ln", "dyt"])
