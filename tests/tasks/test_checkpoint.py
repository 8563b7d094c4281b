"""Reading and writing a task's checkpoint in one module (derf_zoo.tasks.checkpoint): the checksum of each section,
the weights-only load, the task class, the network rebuilt from the registry, and every reader going through it."""

import pytest
import torch

from derf_zoo.tasks.checkpoint import (
    CHECKSUM_KEY,
    SECTIONS,
    CorruptCheckpointError,
    TaskCheckpoint,
    read_checkpoint,
    record_checksum,
    verify_checksum,
)
from tests.tasks._tiny_diffusion import one_step_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Diffusion task after one step, and its checkpoint file (what ``derf-zoo fit`` writes)."""
    return one_step_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.ckpt")


def _tampered(path, tmp_path, section="state_dict"):
    ckpt = torch.load(path, weights_only=True)
    value = ckpt[section]
    tensor = next(iter(value.values())) if isinstance(value, dict) else value[0]["state"][0]["exp_avg"]
    tensor.add_(1.0)
    out = tmp_path / f"tampered_{section}.ckpt"
    torch.save(ckpt, out)
    return out


def test_a_checkpoint_reads_back_its_task_network_and_step(trained):
    from derf_zoo.tasks.diffusion import Diffusion

    task, path = trained
    ckpt = read_checkpoint(path)
    assert isinstance(ckpt, TaskCheckpoint) and ckpt.verified and ckpt.source == str(path)
    assert ckpt.task_class() is Diffusion and ckpt.global_step == 1
    assert ckpt.hyper_parameters["model"] == "dit_nano_derf"
    model, kind = ckpt.build_network()
    assert kind == "raw training weights (no averaging)" and not model.training
    expected = task.model.state_dict()
    assert model.state_dict().keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert set(ckpt.data[CHECKSUM_KEY]["sections"]) <= set(SECTIONS)


def test_the_checksum_names_each_damaged_or_missing_section():
    ckpt = {"state_dict": {"model.w": torch.ones(3)}, "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}}],
            "epoch": 0}  # fmt: skip
    assert verify_checksum(ckpt) is False  # a checkpoint from before checksums: nothing to verify
    record_checksum(ckpt)
    assert verify_checksum(ckpt, "x.ckpt") is True
    ckpt["epoch"] = 5  # outside the sections: not training state
    assert verify_checksum(ckpt) is True
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"][1] = 1e-30  # one flipped value deep inside
    with pytest.raises(CorruptCheckpointError, match=r"x\.ckpt is corrupted: .* in optimizer_states \(bytes differ\)"):
        verify_checksum(ckpt, "x.ckpt")
    del ckpt["optimizer_states"]
    with pytest.raises(CorruptCheckpointError, match=r"optimizer_states \(missing\)"):
        verify_checksum(ckpt)


def test_bad_files_fail_with_their_name(trained, tmp_path):
    _, path = trained
    with pytest.raises(FileNotFoundError, match=r"No checkpoint file at .*missing\.ckpt"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        read_checkpoint(tmp_path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"Cannot read .*junk\.ckpt as a Lightning checkpoint with weights_only=True"):
        read_checkpoint(junk)
    for section in ("state_dict", "optimizer_states"):
        with pytest.raises(CorruptCheckpointError, match=rf"tampered_{section}\.ckpt is corrupted: .* {section} "):
            read_checkpoint(_tampered(path, tmp_path, section))
    assert not read_checkpoint(_tampered(path, tmp_path), verify=False).verified  # asked not to check: read as is
    with pytest.raises(ValueError, match="weights must be 'ema' or 'raw'"):
        read_checkpoint(path).network_weights("best")
    with pytest.raises(ValueError, match=r"weights='ema': this checkpoint has no averaged weights"):
        read_checkpoint(path).build_network("ema")


def test_a_task_given_a_module_cannot_be_rebuilt(trained, tmp_path):
    _, path = trained
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["model"] = None  # what a task built around an nn.Module records
    record_checksum(ckpt)
    torch.save(ckpt, tmp_path / "module.ckpt")
    with pytest.raises(ValueError, match=r"module\.ckpt: its task was given a built module, not a registry name"):
        read_checkpoint(tmp_path / "module.ckpt").build_network()


def test_teachers_backbones_and_dit_loading_read_through_it(trained, tmp_path):
    from derf_zoo.diffusion.sampling import load_dit
    from derf_zoo.tasks.distill import load_teacher
    from derf_zoo.tasks.sequence_classification import backbone_state_dict

    task, path = trained
    expected = {k: v for k, v in task.model.state_dict().items()}
    for weights in (backbone_state_dict(path), load_teacher(str(path)).state_dict(), load_dit(str(path)).state_dict()):
        assert weights.keys() == expected.keys() and all(torch.equal(weights[k], v) for k, v in expected.items())
    tampered = str(_tampered(path, tmp_path))
    for reader in (load_teacher, backbone_state_dict, load_dit):  # none loads damaged weights
        with pytest.raises(CorruptCheckpointError, match=r"tampered_state_dict\.ckpt is corrupted"):
            reader(tampered)


def test_the_old_import_paths_name_the_same_objects():
    import derf_zoo.tasks.base as base
    import derf_zoo.tasks.checkpoint as checkpoint
    import derf_zoo.tasks.checksum as checksum
    import derf_zoo.tasks.export as export

    assert checksum.verify_checksum is checkpoint.verify_checksum and checksum.CorruptCheckpointError is (
        checkpoint.CorruptCheckpointError)  # fmt: skip
    assert export.task_class is checkpoint.task_class and export.import_class is checkpoint.import_class
    assert base.TASK_KEY == checkpoint.TASK_KEY == "derf_zoo_task"
