"""The teacher option of every task: a fitted student starts at the teacher's outputs, the distillation loss goes
down, the teacher is never saved, a run without a teacher is unchanged, and bad teachers are named."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from derf_zoo import create_model
from derf_zoo.data import DigitsDataModule
from derf_zoo.norms import PointwiseNorm
from derf_zoo.tasks import Diffusion, ImageClassification
from derf_zoo.tasks.base import NORMS_FITTED_KEY
from derf_zoo.tasks.distill import init_student, kl_to_teacher, load_teacher

TEACHER = "vit_nano_ln.digits"


class _Payload:
    """An arbitrary class: unpickling it would run code, so a weights-only load must refuse it."""


def _trainer(tmp_path, **kw):
    defaults = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": tmp_path}
    return L.Trainer(**{**defaults, **kw})


def _kl_to_teacher(task, teacher, x):
    with torch.no_grad():
        kl = float(kl_to_teacher(task.model.eval()(x), teacher(x)))
    task.model.train()
    return kl


@pytest.mark.slow
def test_fit_norms_starts_the_student_at_the_teacher_and_distillation_goes_down(tmp_path):
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    x, _ = next(iter(data.val_dataloader()))
    teacher = load_teacher(TEACHER)

    naive = ImageClassification("vit_nano_derf", teacher=TEACHER, fit_norms=0)
    init_student(naive.model, teacher)  # the teacher's weights with default Derf alphas: the naive conversion
    kl_naive = _kl_to_teacher(naive, teacher, x)

    task = ImageClassification("vit_nano_derf", teacher=TEACHER, fit_norms=2, distill_weight=1.0,
                               optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    _trainer(tmp_path, max_steps=0).fit(task, datamodule=data)  # fit start only: the student is fitted
    assert task.norms_fitted and task.alpha_calibrated
    kl_fit = _kl_to_teacher(task, teacher, x)
    assert kl_fit < 0.5 * kl_naive

    _trainer(tmp_path, max_steps=15).fit(task, datamodule=data)
    kl_after = _kl_to_teacher(task, teacher, x)
    assert kl_after < kl_fit


def test_a_true_half_student_gets_a_teacher_in_its_precision(tmp_path):
    task = ImageClassification("vit_nano_derf", teacher=TEACHER, fit_norms=1, distill_weight=1.0)
    logged = {}
    task.log = lambda name, value, **k: logged.__setitem__(name, value if name != "train/distill" else float(value))
    _trainer(tmp_path, max_steps=1, limit_val_batches=0, precision="bf16-true").fit(
        task, datamodule=DigitsDataModule(batch_size=16))  # fmt: skip
    assert next(task.model.parameters()).dtype == torch.bfloat16
    assert next(task.teacher.parameters()).dtype == torch.bfloat16  # the fp32 teacher was cast, not the inputs
    assert logged["train/distill"] > 0 and math.isfinite(logged["train/distill"])


@pytest.mark.slow
def test_teacher_is_never_a_submodule_nor_saved(tmp_path):
    task = ImageClassification("vit_nano_derf", teacher=TEACHER, fit_norms=1)
    trainer = _trainer(tmp_path, max_steps=1, enable_checkpointing=True)
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=16))
    assert task.teacher is not None
    assert not any(k.startswith("_teacher") or ".teacher" in k for k in task.state_dict())
    assert all(m is not task.teacher for m in task.modules())
    ckpt_path = tmp_path / "saved.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["hyper_parameters"]["teacher"] == TEACHER and ckpt[NORMS_FITTED_KEY] is True
    assert set(ckpt["state_dict"]) == set(task.state_dict())
    # resuming never re-fits: the checkpoint's weights win
    resumed = ImageClassification("vit_nano_derf", teacher=TEACHER, fit_norms=1)
    _trainer(tmp_path, max_steps=2).fit(resumed, datamodule=DigitsDataModule(batch_size=16), ckpt_path=ckpt_path)
    assert resumed.norms_fitted


def test_a_teacher_given_as_a_module_is_not_a_submodule():
    teacher = load_teacher(TEACHER)
    task = ImageClassification("vit_nano_derf", teacher=teacher, fit_norms=1)
    assert set(task.state_dict()) == {f"model.{k}" for k in task.model.state_dict()}
    assert "teacher" not in task.hparams  # a module is no hyperparameter


def test_without_a_teacher_the_loss_is_the_plain_task_loss():
    task = ImageClassification("vit_nano_derf", {"embed_dim": 32, "depth": 1, "num_heads": 2})
    assert task.teacher is None and not task.distilling()
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    task.log = lambda *a, **k: None
    loss = task.training_loss((x, y), 0)
    assert torch.equal(loss, F.cross_entropy(task.model(x), y))
    assert "teacher" in task.hparams and task.hparams["teacher"] is None


def test_bad_teachers_and_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="fit_norms fits the student's norms to the teacher's"):
        ImageClassification("vit_nano_derf", fit_norms=2)
    with pytest.raises(ValueError, match="distill_temperature must be a finite number > 0"):
        ImageClassification("vit_nano_derf", teacher=TEACHER, distill_temperature=0)
    with pytest.raises(ValueError, match="distill_weight"):
        ImageClassification("vit_nano_derf", teacher=TEACHER, distill_weight=float("nan"))
    # another head size: named by the shapes
    with pytest.raises(ValueError, match=r"teacher's logits have shape \(2, 10\) but the student's \(2, 7\)"):
        kl_to_teacher(torch.randn(2, 7), torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"shape differs: head.weight: teacher \(10, 64\) vs student \(7, 64\)"):
        init_student(create_model("vit_nano_derf", num_classes=7), load_teacher(TEACHER))
    # a pickle is refused (weights_only), a missing file is named
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "x": _Payload()}, bad)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_teacher(str(bad))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_teacher(str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="no point-wise norm"):
        t = ImageClassification("vit_nano_ln", teacher=TEACHER, fit_norms=1)
        _trainer(tmp_path, max_steps=1).fit(t, datamodule=DigitsDataModule(batch_size=16))


def test_diffusion_distils_to_the_teachers_outputs(tmp_path):
    task = Diffusion("dit_nano_derf", teacher="dit_nano_ln.digits", fit_norms=1, distill_weight=1.0)
    logged = {}
    task.log = lambda name, value, **k: logged.__setitem__(name, float(value))
    teacher = create_model("dit_nano_ln.digits", pretrained=True)
    object.__setattr__(task, "_teacher", teacher.eval().requires_grad_(False))
    init_student(task.model, teacher)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss = task.training_loss((x, y), 0)
    assert logged["train/distill"] > 0 and torch.isfinite(loss)
    assert loss > logged["train/loss"]  # the distillation term is added
    assert any(isinstance(m, PointwiseNorm) for m in task.model.modules())


@pytest.mark.parametrize("task_name,student,student_args,teacher,batch", [
    # the LayerNorm teacher has no head bias, so neither has its student (the from-scratch Derf model does)
    ("DNALanguageModeling", "hyenadna_nano_derf", {"head_bias": False}, "hyenadna_nano_ln.ecoli",
     lambda: torch.randint(7, 11, (4, 65))),
    ("SpeechPretraining", "wav2vec2_tiny_derf", {}, "wav2vec2_tiny_ln.speech", lambda: torch.randn(2, 16000)),
])
def test_lm_and_speech_tasks_add_their_distillation_term(task_name, student, student_args, teacher, batch):
    import derf_zoo.tasks as tasks

    task = getattr(tasks, task_name)(student, model_args=student_args, teacher=teacher, distill_weight=0.5)
    logged = {}
    task.log = lambda name, value, **k: logged.__setitem__(name, float(value))
    net = load_teacher(teacher)
    object.__setattr__(task, "_teacher", net)
    init_student(task.model, net)
    torch.manual_seed(0)
    loss = task.training_loss(batch(), 0)
    assert torch.isfinite(loss) and logged["train/distill"] > 0
    task.distill_weight = 0.0  # the same draws without the term: exactly the task's own loss
    torch.manual_seed(0)
    plain = task.training_loss(batch(), 0)
    assert float(loss) == pytest.approx(float(plain) + 0.5 * logged["train/distill"], rel=1e-5)


def test_the_kl_over_a_mask_is_the_mean_over_the_kept_positions_only():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    mask = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    kept = mask.nonzero().tolist()
    per_position = [float(kl_to_teacher(student[b, i : i + 1], teacher[b, i : i + 1], 2.0)) for b, i in kept]
    assert float(kl_to_teacher(student, teacher, 2.0, mask)) == pytest.approx(sum(per_position) / 8, rel=1e-5)
    garbage = student.clone()
    garbage[0, :2] = 1e4  # what a student predicts at padding does not count
    assert float(kl_to_teacher(garbage, teacher, 2.0, mask)) == pytest.approx(sum(per_position) / 8, rel=1e-5)
    assert float(kl_to_teacher(student, teacher, mask=torch.zeros(2, 5, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match=r"mask has shape \(5,\)"):
        kl_to_teacher(student, teacher, mask=torch.ones(5, dtype=torch.bool))


def test_dna_distillation_ignores_left_padding():
    from derf_zoo.data.dna import PAD_ID
    from derf_zoo.tasks import DNALanguageModeling

    task = DNALanguageModeling("hyenadna_nano_derf", teacher="hyenadna_nano_ln.ecoli", distill_weight=1.0)
    logged = {}
    task.log = lambda name, value, **k: logged.__setitem__(name, float(value))
    net = load_teacher("hyenadna_nano_ln.ecoli")
    object.__setattr__(task, "_teacher", net)
    torch.manual_seed(0)
    bases = torch.randint(7, 11, (2, 33))
    padded = torch.cat([torch.full((2, 8), PAD_ID), bases], dim=1)
    inputs = padded[:, :-1]
    task.model.eval()  # no dropout draw: the two forwards below see the same network
    with torch.no_grad():
        expected = kl_to_teacher(task.model(inputs), net(inputs), mask=inputs != PAD_ID)
        task.training_loss(padded, 0)
    assert logged["train/distill"] == pytest.approx(float(expected), rel=1e-5)
    with torch.no_grad():  # and differs from the mean over every position, padding included
        assert float(kl_to_teacher(task.model(inputs), net(inputs))) != pytest.approx(float(expected), rel=1e-3)


@pytest.mark.slow
def test_upstream_checkpoints_are_read_weights_only(tmp_path):
    import argparse

    from derf_zoo.models.dit import to_official
    from derf_zoo.tasks.distill import read_weights

    teacher = create_model("dit_s_8").eval()  # a standard size: from_official reads it from the weights
    path = tmp_path / "official.pt"  # an official training checkpoint: the EMA network and pickled arguments
    torch.save({"model": {}, "ema": to_official(teacher), "args": argparse.Namespace(model="DiT-XL/2")}, path)
    assert set(read_weights(path)) == set(to_official(teacher))
    imported = load_teacher(f"dit-official:{path}")
    assert not any(p.requires_grad for p in imported.parameters()) and not imported.training
    from derf_zoo.tasks.convert import student_of

    assert imported.pretrained_cfg["architecture"] == "dit_xl_2"  # registry-built: a student can be made and saved
    assert init_student(student_of(imported, "derf"), imported)
    x, t, y = torch.randn(2, 4, 32, 32), torch.tensor([3, 700]), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(imported(x, t, y), teacher(x, t, y))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_teacher(f"hyenadna:{tmp_path / 'missing.pt'}")
    with pytest.raises(ValueError, match="holds no state dict"):
        torch.save({"step": 3}, tmp_path / "empty.pt")
        read_weights(tmp_path / "empty.pt")


def test_speech_calibration_crops_utterances_to_the_shortest_real_length():
    from derf_zoo.tasks import SpeechPretraining

    task = SpeechPretraining("wav2vec2_tiny_derf")
    mask = torch.ones(1, 16000, dtype=torch.long)
    mask[0, 12000:] = 0  # an utterance padded within its batch: only its 12,000 real samples count
    (x,), kwargs = task.calibration_call([torch.randn(2, 16000), (torch.randn(1, 16000), mask)])
    assert x.shape == (3, 12000) and kwargs["attention_mask"] is None


@pytest.mark.slow
def test_a_timm_teacher_is_registry_built_so_a_student_can_be_made_from_it(monkeypatch):
    import timm

    from derf_zoo.norms import Derf
    from derf_zoo.tasks.convert import student_of

    real, made = timm.create_model, []

    def offline(name, pretrained=False, **kw):  # the architecture with random weights stands in for the Hub's
        made.append(real(name, pretrained=False, **kw))
        return made[-1]

    monkeypatch.setattr(timm, "create_model", offline)
    teacher = load_teacher("timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert teacher.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)  # timm's input pipeline, not ImageNet's default
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), made[0].eval()(x), atol=1e-5, rtol=1e-5)
    student = student_of(teacher, "derf")
    assert init_student(student, teacher) and any(isinstance(m, Derf) for m in student.modules())


def test_diffusion_teacher_sees_the_labels_the_student_dropped():
    task = Diffusion("dit_nano_derf", teacher="dit_nano_ln.digits", distill_weight=1.0)
    task.log = lambda *a, **k: None
    seen = {}
    teacher = create_model("dit_nano_ln.digits", pretrained=True).eval().requires_grad_(False)
    teacher.y_embedder.register_forward_pre_hook(lambda m, a: seen.__setitem__("teacher", a[0].clone()))
    task.model.y_embedder.register_forward_hook(lambda m, a, out: seen.__setitem__("student", (a[0].clone(), a[1])))
    object.__setattr__(task, "_teacher", teacher)
    task.model.train()
    torch.manual_seed(3)
    y = torch.randint(0, 10, (64,))
    task.training_loss((torch.randn(64, 1, 8, 8), y), 0)
    student_labels, student_dropped_again = seen["student"]
    assert torch.equal(seen["teacher"], student_labels) and student_dropped_again is False
    assert (student_labels == 10).any() and (student_labels != y).sum() == (student_labels == 10).sum()
