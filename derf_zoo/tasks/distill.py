"""The teacher of a task: loading it frozen, starting a student from its weights, and the distillation losses.

A recipe says "start from this LayerNorm model, fit the student's norms to it, distil": ``teacher:`` names the
pretrained model, ``fit_norms:`` how many training batches the fit of :func:`derf_zoo.norms.fit_pointwise_norms`
sees, ``distill_weight`` / ``distill_temperature`` the extra loss. The student is the task's own network (a Derf
architecture with the teacher's shapes); the teacher never becomes a submodule of the task, so it is never saved
into the student's checkpoint or export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo._validate import check_int, check_positive, is_real
from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.weights.checkpoint_file import read_weights  # re-exported: the teacher's reader of upstream files

__all__ = ["FOREIGN", "check_distill_args", "describe_teacher", "init_student", "kl_to_teacher", "load_teacher",
           "mse_to_teacher", "read_weights", "teacher_references"]


#: the registry entry that rebuilds an imported model from its arguments (each takes every argument of its class)
_GENERIC = {"DiT": "dit_xl_2", "Wav2Vec2": "wav2vec2_base", "HyenaDNA": "hyenadna_tiny_1k",
            "Caduceus": "caduceus_ph_1k", "GPT2": "gpt2"}


def _registered(model: nn.Module) -> nn.Module:
    """An imported model rebuilt through the registry with the arguments its importer read, so that a student can be
    made (and saved as a Hub folder) from its architecture and arguments."""
    built = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if built or type(model).__name__ not in _GENERIC or getattr(model, "model_args", None) is None:
        return model
    from derf_zoo.models import create_model

    try:
        rebuilt = create_model(_GENERIC[type(model).__name__], **model.model_args)
        rebuilt.load_state_dict(model.state_dict())
    except (ValueError, TypeError, RuntimeError):
        # the importer's arguments do not pin the whole architecture: the teacher still works as it is (recipes
        # name their student), only `derf-zoo convert` cannot make one from it and says so
        return model
    return rebuilt


def _foreign(kind: str, where: str) -> nn.Module:
    """Import an upstream checkpoint into the zoo (its own layout, through the family's importer)."""
    return _registered(_import_foreign(kind, where))


def _import_foreign(kind: str, where: str) -> nn.Module:
    if kind == "timm":
        import timm

        from derf_zoo.models import create_model
        from derf_zoo.models.vit.layouts import _args_from_timm_model, from_timm

        source = timm.create_model(where, pretrained=True)
        # Rebuilt through the registry's generic ViT with every argument read from the timm model, and timm's input
        # pipeline as its data config: a student can then be made (and saved) from its architecture and arguments.
        data = {k: source.pretrained_cfg[k] for k in ("mean", "std", "crop_pct", "interpolation", "input_size")
                if k in source.pretrained_cfg}  # fmt: skip
        model = create_model("vit_base_patch16_224", **_args_from_timm_model(source), pretrained_cfg_overlay=data)
        model.load_state_dict(from_timm(source).state_dict())
        return model
    if kind == "hf-wav2vec2":
        from transformers import Wav2Vec2ForPreTraining

        from derf_zoo.models.wav2vec2 import from_transformers

        return from_transformers(Wav2Vec2ForPreTraining.from_pretrained(where))
    if kind == "hf-gpt2":
        from transformers import GPT2LMHeadModel

        from derf_zoo.models.gpt2 import from_transformers as gpt2_from_transformers

        return gpt2_from_transformers(GPT2LMHeadModel.from_pretrained(where))
    if kind == "nanogpt":
        from derf_zoo.models.gpt2 import from_nanogpt

        return from_nanogpt(where)  # a ckpt.pt, read weights-only
    from derf_zoo.models import caduceus, dit, hyenadna

    if kind == "dit-official":
        return dit.from_official(where)  # the file: from_official picks its EMA network, as the official sampler
    importer = {"hyenadna": hyenadna.from_hyenadna, "caduceus": caduceus.from_caduceus}[kind]
    return importer(read_weights(where, who="teacher"))


#: ``prefix:`` of an upstream checkpoint the teacher can be imported from.
FOREIGN = ("timm", "hf-wav2vec2", "hf-gpt2", "nanogpt", "dit-official", "hyenadna", "caduceus")


def load_teacher(spec: str | nn.Module) -> nn.Module:
    """The teacher network, frozen (no gradients) and in eval mode.

    Args:
        spec: an ``nn.Module``; a released name (``"vit_mini_ln.fmnist"``, loaded with ``pretrained=True``); a
            derf_zoo Hub folder or repo id; a Lightning checkpoint (``.ckpt``) written by ``derf-zoo fit``; or an
            upstream checkpoint imported through its family's importer: ``timm:<name>`` (timm's pretrained ViT),
            ``hf-wav2vec2:<id or folder>`` (Hugging Face ``Wav2Vec2ForPreTraining``), ``hf-gpt2:<id or folder>``
            (Hugging Face ``GPT2LMHeadModel``), ``nanogpt:<ckpt.pt>``, ``dit-official:<file>``
            (Meta's DiT ``.pt``, or an official training checkpoint: its ``ema``), ``hyenadna:<file>``,
            ``caduceus:<file>``. Files are read weights-only.

    Raises:
        ValueError: an unknown name, or a file that is not weights-only loadable (pickles are refused).
        FileNotFoundError: a path that does not exist.
    """
    kind, _, where = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if isinstance(spec, nn.Module):
        model = spec
    elif not isinstance(spec, str) or not spec:
        raise ValueError(f"teacher must be a released model name, a Hub folder or id, a .ckpt path, "
                         f"'<format>:<source>' with format one of {FOREIGN}, or an nn.Module; got {spec!r}.")
    elif kind in FOREIGN and where:
        model = _foreign(kind, where)
    elif spec.endswith(".ckpt") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise FileNotFoundError(f"teacher: no checkpoint at {spec}.")
        from derf_zoo.tasks.checkpoint import read_checkpoint

        model = read_checkpoint(spec).build_network()[0]  # weights-only, checksum verified
    elif Path(spec).is_dir() or spec.count("/") == 1:
        from derf_zoo.models import from_pretrained

        model = from_pretrained(spec)
    else:
        from derf_zoo.models import create_model

        model = create_model(spec, pretrained=True)
    model.eval()
    model.requires_grad_(False)
    return model


def teacher_references(student: nn.Module, teacher: nn.Module) -> dict[str, nn.Module]:
    """``{name: teacher module}`` for every point-wise norm of ``student``: what the fit reproduces.

    Raises:
        ValueError: the student has no point-wise norm, or the teacher has no module of the same name.
    """
    names = [n for n, m in student.named_modules() if isinstance(m, PointwiseNorm)]
    if not names:
        raise ValueError(f"fit_norms: the student {type(student).__name__} has no point-wise norm (Derf, DyT, ...) to "
                         "fit; build it with a point-wise norm (e.g. the teacher's architecture with norm='derf').")
    teacher_modules = dict(teacher.named_modules())
    missing = [n for n in names if n not in teacher_modules]
    if missing:
        raise ValueError(f"fit_norms: the teacher {type(teacher).__name__} has no module {missing[0]!r} (and "
                         f"{len(missing) - 1} more) where the student has a point-wise norm; student and teacher must "
                         "be the same architecture up to the norm.")
    return {n: teacher_modules[n] for n in names}


@torch.no_grad()
def init_student(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy every teacher weight into the student; the student's alpha/shift (which the teacher lacks) stay as
    they are, and an RMSNorm teacher's missing bias leaves the student's bias as it is.

    Returns:
        The student parameters the teacher had no value for (alpha, shift, a norm bias).

    Raises:
        ValueError: a teacher weight the student lacks, or a shape that differs (another head size, vocabulary,
            width): nothing is copied then.
    """
    target, source = student.state_dict(), teacher.state_dict()
    norm_params = {f"{n}.{p}" for n, m in student.named_modules() if isinstance(m, PointwiseNorm)
                   for p, _ in m.named_parameters(recurse=False)}  # fmt: skip
    unexpected = [k for k in source if k not in target]
    shapes = [f"{k}: teacher {tuple(v.shape)} vs student {tuple(target[k].shape)}"
              for k, v in source.items() if k in target and v.shape != target[k].shape]  # fmt: skip
    missing = [k for k in target if k not in source and k not in norm_params]
    if unexpected or shapes or missing:
        problems = ([f"shape differs: {s}" for s in shapes[:3]] + [f"teacher-only: {k}" for k in unexpected[:3]]
                    + [f"student-only: {k}" for k in missing[:3]])  # fmt: skip
        raise ValueError("The student cannot start from the teacher's weights; they must be the same "
                         "architecture up to the norm (same head size, vocabulary, widths). " + "; ".join(problems))
    for k, v in source.items():
        target[k].copy_(v)
    return sorted(k for k in target if k not in source)


def _check_same(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"distillation: the teacher's {what} have shape {tuple(teacher.shape)} but the student's "
                         f"{tuple(student.shape)}: another head size, vocabulary or output channels. The teacher must "
                         "produce what the student produces.")


def kl_to_teacher(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0,
                  mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over every position, or over the positions
    where ``mask`` (the logits' shape without the class axis) is True: padding is no distribution to learn (Hinton et
    al. 2015; the T^2 keeps the gradient's size independent of T)."""
    _check_same(student_logits, teacher_logits, "logits")
    if mask is not None and mask.shape != student_logits.shape[:-1]:
        raise ValueError(f"distillation: the mask has shape {tuple(mask.shape)} but the logits' positions "
                         f"{tuple(student_logits.shape[:-1])}.")
    t = temperature
    s = F.log_softmax(student_logits.float().flatten(0, -2) / t, dim=-1)
    p = F.log_softmax(teacher_logits.float().flatten(0, -2) / t, dim=-1)
    if mask is not None:
        keep = mask.reshape(-1)
        s, p = s[keep], p[keep]
        if not s.shape[0]:  # an all-padding batch: nothing to match, and no NaN from an empty mean
            return s.sum()
    return F.kl_div(s, p, log_target=True, reduction="batchmean") * t * t


def mse_to_teacher(student_out: Tensor, teacher_out: Tensor, what: str = "outputs",
                   mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """Mean squared difference to the teacher's output (over the positions where ``mask`` is True, if given)."""
    _check_same(student_out, teacher_out, what)
    err = (student_out.float() - teacher_out.float()).pow(2)
    if mask is None:
        return err.mean()
    err = err[mask]
    return err.mean() if err.numel() else err.sum()


def describe_teacher(spec: Any) -> str:
    """How the teacher is named in logs and cards."""
    return spec if isinstance(spec, str) else type(spec).__name__


def check_distill_args(teacher: Any, fit_norms: int, distill_weight: float, distill_temperature: float) -> None:
    """Refuse a distillation setting that cannot mean anything, naming it."""
    import math

    check_int("fit_norms", fit_norms, 0, why="a number of training batches; 0: no fit")
    if fit_norms and teacher is None:
        raise ValueError("fit_norms fits the student's norms to the teacher's: give teacher: as well.")
    if not (is_real(distill_weight) and math.isfinite(distill_weight) and distill_weight >= 0):
        raise ValueError(f"distill_weight must be a finite number >= 0, got {distill_weight!r}.")
    check_positive("distill_temperature", distill_temperature)

