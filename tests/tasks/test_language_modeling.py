"""The one causal LM task: nats per token against a closed form, nanoGPT's optimizer groups, the context check,
and a short fit of a nano GPT-2 on Tiny Shakespeare that learns."""

import math

import lightning as L
import pytest
import torch

from derf_zoo.callbacks.eval_train_loss import evaluation_mode_loss
from derf_zoo.callbacks.history import MetricHistory
from derf_zoo.data.text import TextDataModule
from derf_zoo.models.gpt2 import GPT2
from derf_zoo.tasks import DNALanguageModeling, LanguageModeling
from derf_zoo.tasks.optim import param_groups

TINY = {"vocab_size": 65, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2}


def test_loss_is_nats_per_token_of_the_shifted_targets():
    model = GPT2(**TINY).eval()
    task = LanguageModeling(model)
    tokens = torch.randint(0, 65, (3, 17))
    loss_sum, n = task.evaluation_loss(tokens)
    with torch.no_grad():
        logits = model(tokens[:, :-1])
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 65), tokens[:, 1:].reshape(-1), reduction="sum")
    assert n == 3 * 16
    torch.testing.assert_close(loss_sum, expected)
    # the untrained model is close to uniform: ln 65 nats per token
    assert abs(float(loss_sum) / n - math.log(65)) < 0.1


def test_optimizer_groups_are_nanogpts():
    model = GPT2(**TINY, norm="derf")
    decay, no_decay = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if p.dim() >= 2}
    assert "shared_scale" in {names[id(p)] for p in no_decay["params"]}
    assert "wte.weight" in {names[id(p)] for p in decay["params"]}  # nanoGPT decays the (tied) embedding too


def test_a_window_longer_than_the_context_names_both_lengths():
    task = LanguageModeling(GPT2(**TINY))
    with pytest.raises(ValueError, match="Inputs of 20 tokens are longer than the model's context of 16"):
        task.evaluation_loss(torch.zeros(1, 21, dtype=torch.long))


def test_the_dna_task_is_the_causal_task_with_dna_padding():
    assert issubclass(DNALanguageModeling, LanguageModeling)
    task = DNALanguageModeling("hyenadna_nano")
    assert task.pad_token_id == 4 and task.metrics[0].description == "cross entropy per predicted base (nats)"


@pytest.mark.slow
def test_a_short_fit_on_shakespeare_learns_and_logs_nats(tmp_path):
    torch.manual_seed(0)
    task = LanguageModeling(GPT2(**TINY), optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2))
    data = TextDataModule(embedded="shakespeare", seq_len=16, samples_per_epoch=30 * 16, max_eval_windows=64,
                          batch_size=16)
    history = MetricHistory(["val/loss"])
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        callbacks=[history])  # fmt: skip
    trainer.fit(task, datamodule=data)
    val = float(trainer.callback_metrics["val/loss"])
    assert history.curves["val/loss"] == [pytest.approx(val)]  # this epoch's value, logged at the task's epoch end
    assert val < math.log(65) - 0.5  # learned the character frequencies at least
    assert float(trainer.callback_metrics["val/perplexity"]) == pytest.approx(math.exp(val), rel=1e-5)
    train_eval = evaluation_mode_loss(task, data.train_eval_dataloader())
    assert abs(train_eval - val) < 0.5
