"""DNA language modeling and sequence classification on the task contract, with a tiny injected backbone."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Subset

from derf_zoo.data import EcoliVsLambdaDataModule, GenomeDataModule
from derf_zoo.data.dna import PAD_ID, DNATokenizer, reverse_complement_ids
from derf_zoo.hub import WeightsMismatchError
from derf_zoo.tasks import DNALanguageModeling, SequenceClassification
from derf_zoo.tasks.sequence_classification import DNASequenceClassifier, feature_dim


class TinyDNA(nn.Module):
    """The agreed interface: ``forward(ids) -> (B, L, V)`` logits, ``forward_features(ids) -> (B, L, D)``.

    A width-5 convolution over embeddings: causal (left context only) or centred (both sides, for masked LM).
    """

    def __init__(self, causal: bool = True, d: int = 16, vocab: int = 16, max_seq_len: int | None = None,
                 declare_width: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.conv = nn.Conv1d(d, d, 5)
        self.lm_head = nn.Linear(d, vocab)
        self.is_causal, self.max_seq_len = causal, max_seq_len
        if declare_width:
            self.num_features = d

    def forward_features(self, ids):
        h = self.embed(ids).transpose(1, 2)
        h = F.pad(h, (4, 0) if self.is_causal else (2, 2))
        return torch.tanh(self.conv(h)).transpose(1, 2)

    def forward(self, ids):
        return self.lm_head(self.forward_features(ids))


def _trainer(tmp_path, **kw):
    defaults = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": tmp_path}  # fmt: skip
    return L.Trainer(**{**defaults, **kw})


def _adamw(lr):
    return lambda params: torch.optim.AdamW(params, lr=lr)


# ---- language modeling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["causal", "masked"])
@pytest.mark.slow
def test_lm_trains_and_logs_loss_perplexity_accuracy(tmp_path, mode):
    torch.manual_seed(0)
    data = GenomeDataModule("lambda", seq_len=64, mode=mode, batch_size=8, samples_per_epoch=8 * 40,
                            max_eval_windows=16)  # fmt: skip
    task = DNALanguageModeling(TinyDNA(causal=mode == "causal"), mode=mode, optimizer=_adamw(1e-2))
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=2)
    before = trainer.validate(task, datamodule=data, verbose=False)[0]
    trainer.fit(task, datamodule=data)
    after = trainer.validate(task, datamodule=data, verbose=False)[0]
    assert set(after) == {"val/loss", "val/perplexity", "val/acc"}
    assert after["val/perplexity"] == pytest.approx(math.exp(after["val/loss"]), rel=1e-5)
    assert before["val/loss"] > math.log(10) and after["val/loss"] < 1.45  # from ~ln(16) to ~ln(4) bases
    assert after["val/acc"] > before["val/acc"]
    assert task.task_type == ("text-generation" if mode == "causal" else "fill-mask")


def test_masked_validation_uses_fixed_masks_and_evaluate_matches(tmp_path):
    torch.manual_seed(0)
    data = GenomeDataModule("lambda", seq_len=32, mode="masked", batch_size=4, max_eval_windows=12)
    task = DNALanguageModeling(TinyDNA(causal=False), mode="masked", eval_seed=5)
    trainer = _trainer(tmp_path)
    first = trainer.validate(task, datamodule=data, verbose=False)[0]
    second = trainer.validate(task, datamodule=data, verbose=False)[0]
    assert first == second  # the same masks every epoch
    direct = DNALanguageModeling.evaluate(task.model, data.val_dataloader(), seed=5)  # mode from model.is_causal
    from derf_zoo.tasks.dna_lm import model_lm_mode

    unmarked = nn.Linear(2, 2)
    assert model_lm_mode(unmarked) == "causal"
    unmarked.pretrained_cfg = {"task_type": "fill-mask"}  # what the registry records for Caduceus
    assert model_lm_mode(unmarked) == "masked"
    assert direct["loss"] == pytest.approx(first["val/loss"], rel=1e-5)
    assert direct["acc"] == pytest.approx(100 * first["val/acc"], rel=1e-5)


def test_causal_targets_are_the_next_base_and_pads_are_not_scored():
    task = DNALanguageModeling(TinyDNA(), mode="causal")
    tokens = torch.tensor([[PAD_ID, PAD_ID, 7, 8, 9, 10]])
    inputs, targets = task._pair(tokens, None)
    assert inputs.tolist() == [[4, 4, 7, 8, 9]] and targets.tolist() == [[-100, 7, 8, 9, 10]]
    loss_sum, n = task.evaluation_loss(tokens)
    assert n == 4 and loss_sum.item() > 0


def test_lm_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown mode 'mlm'.*Valid choices: causal, masked"):
        DNALanguageModeling(TinyDNA(), mode="mlm")
    task = DNALanguageModeling(TinyDNA(max_seq_len=32))
    with pytest.raises(ValueError, match="64 tokens are longer than the model's context of 32"):
        task.training_loss(torch.full((2, 65), 7), 0)
    with pytest.raises(ValueError, match="int64 token ids"):
        task.training_loss(torch.randn(2, 8), 0)
    with pytest.raises(ValueError, match="context of 16"):
        DNALanguageModeling(TinyDNA(), max_len=16).training_loss(torch.full((2, 33), 7), 0)
    with pytest.raises(ValueError, match="task trains 'masked' LM but the DataModule cuts 'causal' windows"):
        _trainer(tmp_path, fast_dev_run=True).fit(DNALanguageModeling(TinyDNA(causal=False), mode="masked"),
                                                  datamodule=GenomeDataModule("lambda", seq_len=16, mode="causal"))


# ---- sequence classification ------------------------------------------------------------------------------


@pytest.mark.slow
def test_classification_trains_and_logs_accuracy(tmp_path):
    torch.manual_seed(0)
    data = EcoliVsLambdaDataModule(window=100, batch_size=32)
    data.setup()
    # The loss drops: fit a fixed batch of ~32 windows of both classes (a tiny backbone learns the real task slowly).
    n = len(data.train_eval_set)  # E. coli windows first, then lambda: every (n // 32)th takes both classes
    fixed = DataLoader(Subset(data.train_eval_set, list(range(0, n, n // 32))), batch_size=64)
    task = SequenceClassification(TinyDNA(), num_classes=2, optimizer=_adamw(2e-2))
    before = SequenceClassification.evaluate(task.model, fixed)
    task.train()
    _trainer(tmp_path, max_epochs=40).fit(task, train_dataloaders=fixed)
    after = SequenceClassification.evaluate(task.model, fixed)
    assert before["loss"] > 0.69 and after["loss"] < 0.62 and after["acc1"] > 65  # seeds 0-3: 0.30-0.55, 73-97 %
    # ... and the DataModule path logs the declared metrics on val and test.
    task.train()
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(task, datamodule=data)
    assert {"val/acc1", "val/loss", "train/acc1", "train/loss"} <= set(trainer.callback_metrics)
    tested = trainer.test(task, datamodule=data, verbose=False)[0]
    assert 0.0 <= tested["test/acc1"] <= 1.0 and tested["test/loss"] > 0


def test_mean_pooling_ignores_padding_and_rc_average_is_symmetric():
    backbone = TinyDNA()
    backbone.forward_features = lambda ids: backbone.embed(ids)  # pointwise features: padding may not change the mean
    clf = DNASequenceClassifier(backbone, 3)
    tok = DNATokenizer()
    padded, plain = tok.encode("ACGTTG", max_length=10, padding=True), tok.encode("ACGTTG")
    assert torch.allclose(clf.pooled(padded[None]), clf.pooled(plain[None]))
    rc_clf = DNASequenceClassifier(TinyDNA(), 2, rc_average=True).eval()
    ids = tok.batch_encode(["ACGTTGCA", "GGA"], 8)
    assert torch.allclose(rc_clf(ids), rc_clf(reverse_complement_ids(ids, pad_id=PAD_ID)), atol=1e-6)
    assert not torch.allclose(rc_clf.train()(ids), rc_clf(reverse_complement_ids(ids, pad_id=PAD_ID)))


def test_feature_dim_declared_or_measured_and_errors():
    assert feature_dim(TinyDNA(d=12)) == 12
    assert feature_dim(TinyDNA(d=12, declare_width=False)) == 12  # measured on a probe input
    with pytest.raises(TypeError, match="no forward_features"):
        DNASequenceClassifier(nn.Linear(3, 3), 2)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        DNASequenceClassifier(TinyDNA(), 1)


def test_fine_tuning_starts_from_an_lm_checkpoint(tmp_path):
    torch.manual_seed(0)
    lm = DNALanguageModeling(TinyDNA(), optimizer=_adamw(1e-2))
    data = GenomeDataModule("lambda", seq_len=32, batch_size=4, samples_per_epoch=8, max_eval_windows=4)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(lm, datamodule=data)
    ckpt = tmp_path / "lm.ckpt"
    trainer.save_checkpoint(ckpt)
    lm_state = lm.model.state_dict()
    clf = SequenceClassification(TinyDNA(), num_classes=2, init_from=str(ckpt))
    for k, v in lm_state.items():
        assert torch.equal(clf.model.backbone.state_dict()[k], v), k
    save_file(lm_state, str(tmp_path / "model.safetensors"))
    from_folder = SequenceClassification(TinyDNA(), num_classes=2, init_from=str(tmp_path))
    assert torch.equal(from_folder.model.backbone.embed.weight, lm_state["embed.weight"])
    shapes = r"shape mismatches: .*embed\.weight: weights \(16, 16\) vs model \(16, 8\)"
    with pytest.raises(WeightsMismatchError, match=shapes):
        SequenceClassification(TinyDNA(d=8), num_classes=2, init_from=str(tmp_path / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"'hyenadna_nope\.x' is neither a file, a folder nor a released name"):
        SequenceClassification(TinyDNA(), num_classes=2, init_from="hyenadna_nope.x")


def test_classification_checks_classes_and_context(tmp_path):
    data = EcoliVsLambdaDataModule(window=50, batch_size=8)
    task = SequenceClassification(TinyDNA(), num_classes=3)
    with pytest.raises(ValueError, match="the head has 3 outputs but the data has 2 classes"):
        _trainer(tmp_path, fast_dev_run=True).fit(task, datamodule=data)
    short = SequenceClassification(TinyDNA(max_seq_len=32), num_classes=2)
    with pytest.raises(ValueError, match="50 tokens are longer than the model's context of 32"):
        short(torch.full((1, 50), 7))


@pytest.mark.slow
def test_caduceus_ps_classifier_is_reverse_complement_invariant():
    """One shared d_model head on each pooled strand half, logits averaged (the reference's RCPS classifier)."""
    from derf_zoo.models.caduceus import Caduceus

    torch.manual_seed(0)
    backbone = Caduceus(rcps=True, d_model=8, n_layer=2, d_state=4)
    clf = DNASequenceClassifier(backbone, 3).double().eval()
    assert clf.head.in_features == 8  # one half's width, not the concatenated 2 * d_model
    with torch.no_grad():
        clf.head.weight.normal_()  # large enough that a non-invariant head shows
        clf.head.bias.normal_()
    ids = DNATokenizer().batch_encode(["ACGTTGCAAT", "GGAC", "TTAGC"], 10)  # rows 2 and 3 left-padded
    assert (ids[1:, 0] == PAD_ID).all()
    logits = clf(ids)
    # The strand flip of the whole row (padding moves to the other end, and the padding-aware mean follows it).
    torch.testing.assert_close(clf(reverse_complement_ids(ids)), logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(clf.train()(reverse_complement_ids(ids)), clf(ids), rtol=1e-10, atol=1e-10)
    # Padding is excluded from the mean but not from the scans: equal up to where the padding sits.
    assert torch.allclose(clf.eval()(ids[:1]), logits[:1])
