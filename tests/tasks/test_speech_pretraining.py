"""SpeechPretraining on the task contract: a few steps on synthetic speech-like audio, checkpoints, validation."""

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from derf_zoo.norms import PointwiseNorm
from derf_zoo.tasks import Schedule, SpeechPretraining
from derf_zoo.tasks.base import TASK_KEY
from derf_zoo.tasks.speech_pretraining import fairseq_adam

TINY = {"conv_dim": (32,) * 7, "embed_dim": 32, "depth": 1, "num_heads": 2, "ffn_dim": 64, "final_dim": 16,
        "num_codevectors": 16, "num_negatives": 10, "pos_conv_kernel": 16, "pos_conv_groups": 2}  # fmt: skip


def synthetic_waveforms(n: int, samples: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Chirps with harmonics and noise, one padded clip per batch of two: structure a model can learn."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    batches = []
    for _ in range(n):
        f0 = 100 + 200 * torch.rand(2, 1, generator=g)
        phase = 2 * math.pi * (f0 * t + 150 * t**2)
        x = torch.sin(phase) + 0.5 * torch.sin(2 * phase) + 0.1 * torch.randn(2, samples, generator=g)
        att = torch.ones(2, samples, dtype=torch.long)
        att[1, samples * 3 // 4:] = 0
        batches.append({"input_values": x * att, "attention_mask": att})
    return batches


def _loader(batches):
    return DataLoader(batches, batch_size=None)


def test_polynomial_schedule_with_warmup_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = Schedule("polynomial", warmup_steps=10, power=2.0).build(opt, total_steps=110, steps_per_epoch=1)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx((1 - 50 / 100) ** 2)
    with pytest.raises(ValueError, match="polynomial"):
        Schedule("poly")


def test_losses_parts_and_deterministic_evaluate():
    task = SpeechPretraining("wav2vec2_tiny_derf", model_args=TINY)
    assert task.declaration()["task_type"] == "feature-extraction"
    batch = synthetic_waveforms(1, 8000, 0)[0]
    loss = task.training_loss(batch, 0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    total, n = task.evaluation_loss(batch)
    assert n > 0 and torch.isfinite(total)
    (x,), kwargs = task.model_inputs(batch)
    assert x is batch["input_values"] and kwargs["attention_mask"] is batch["attention_mask"]
    out = task.model(x, **kwargs)
    parts = SpeechPretraining.parts(out)
    assert 0.3 < float(parts["masked_fraction"]) < 0.7
    torch.testing.assert_close(parts["loss"], out.loss / out.sample_size / math.log(2))
    loader = synthetic_waveforms(2, 8000, 1)
    first, again = SpeechPretraining.evaluate(task.model, loader), SpeechPretraining.evaluate(task.model, loader)
    assert first == again and set(first) == {"loss", "contrastive"}
    with pytest.raises(ValueError, match="input_values"):
        task.training_loss({"audio": x}, 0)
    with pytest.raises(ValueError, match="pretraining head"):
        SpeechPretraining("wav2vec2_tiny_ln", model_args={**TINY, "pretraining": False})


def test_a_batch_without_a_loss_is_an_error_not_an_attribute_error():
    task = SpeechPretraining("wav2vec2_tiny_derf", model_args=TINY)
    batch = synthetic_waveforms(1, 8000, 0)[0]
    # a model that masks nothing returns no loss: the task says so instead of failing on None.clamp_min
    task.model.sample_mask = lambda frames, padding, n, generator=None: torch.zeros(n, frames, dtype=torch.bool)
    with pytest.raises(ValueError, match="no loss"):
        task.training_loss(batch, 0)
    with pytest.raises(ValueError, match="no loss"):
        task.evaluation_loss(batch)
    with pytest.raises(ValueError, match="no loss"):
        task.validation_step(batch, 0)


def test_evaluation_loss_is_deterministic_and_leaves_the_global_rng_alone():
    task = SpeechPretraining("wav2vec2_tiny_derf", model_args=TINY, eval_seed=7).eval()
    batch = synthetic_waveforms(1, 8000, 0)[0]
    state = torch.get_rng_state()
    with torch.no_grad():
        first, again = task.evaluation_loss(batch), task.evaluation_loss(batch)
    assert torch.equal(torch.get_rng_state(), state)  # masks and negatives come from the eval seed
    assert first[1] == again[1] and torch.equal(first[0], again[0])
    # the same masks and negatives as validation's first batch
    (x,), kwargs = task.model_inputs(batch)
    with torch.no_grad():
        torch.testing.assert_close(first[0], task.model(x, **kwargs).loss / math.log(2))


@pytest.mark.slow
def test_training_reduces_the_loss():
    torch.manual_seed(0)
    task = SpeechPretraining("wav2vec2_tiny_ln", model_args={**TINY, "dropout": 0.0, "dropout_input": 0.0,
                                                             "dropout_features": 0.0})  # fmt: skip
    opt = torch.optim.AdamW(task.model.parameters(), lr=2e-3)
    batch = synthetic_waveforms(1, 8000, 2)[0]
    task.model.eval()
    before = SpeechPretraining.evaluate(task.model, [batch])["loss"]
    task.model.train()
    for _ in range(25):
        opt.zero_grad()
        task.training_loss(batch, 0).backward()
        opt.step()
    after = SpeechPretraining.evaluate(task.model, [batch])["loss"]
    assert after < before - 0.1, (before, after)


@pytest.mark.slow
def test_fit_keeps_the_temperature_and_validation_is_deterministic(tmp_path):
    torch.manual_seed(0)
    task = SpeechPretraining("wav2vec2_tiny_derf", model_args={**TINY, "norm": "derf(alpha=auto)",
                                                               "latent_temp": (2.0, 0.5, 0.9)},
                             schedule=Schedule("polynomial", warmup_steps=2))  # fmt: skip
    trainer = L.Trainer(max_steps=3, limit_val_batches=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, gradient_clip_val=25.0)  # fmt: skip
    val = _loader(synthetic_waveforms(2, 8000, 4))
    trainer.fit(task, train_dataloaders=_loader(synthetic_waveforms(3, 8000, 3)), val_dataloaders=val)
    assert task.alpha_calibrated
    assert all(m.alpha.item() != 0.5 for m in task.model.modules() if isinstance(m, PointwiseNorm))
    # the temperature of the last update (global step 2), as the schedule says
    assert float(task.model.quantizer.temperature) == pytest.approx(2.0 * 0.9**2)
    # fairseq's polynomial decay after warmup: 3 steps in all, 2 of warmup -> decayed to 0 at the end
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)
    for key in ("val/loss", "val/contrastive", "train/perplexity_epoch", "train/masked_fraction_epoch"):
        assert key in trainer.callback_metrics, key
    first = trainer.validate(task, dataloaders=val, verbose=False)[0]["val/loss"]
    again = trainer.validate(task, dataloaders=val, verbose=False)[0]["val/loss"]
    assert first == again
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert float(ckpt["state_dict"]["model.quantizer.temperature"]) == pytest.approx(2.0 * 0.9**2)
    assert ckpt[TASK_KEY]["metrics"][0]["name"] == "loss"
    assert ckpt["hyper_parameters"]["optimizer"] is fairseq_adam
    restored = SpeechPretraining.load_from_checkpoint(tmp_path / "last.ckpt", weights_only=True)
    assert float(restored.model.quantizer.temperature) == pytest.approx(2.0 * 0.9**2)
