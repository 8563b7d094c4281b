"""The DiT recipes' EMA (Lightning's ``EMAWeightAveraging``, decay 0.9999) behaves as DiT's ``train.py`` EMA:
it starts from the model, updates after every optimizer step, and its weights are the checkpoint's ``state_dict``
(what ``derf-zoo export`` and ``derf-zoo sample`` read by default). Pins Lightning's behaviour the recipes rely on."""

import copy

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

from derf_zoo.diffusion.sampling import load_dit
from derf_zoo.recipes import list_recipes, trained_from_scratch
from derf_zoo.tasks.diffusion import Diffusion

TINY_LATENT = {"hidden_size": 16, "depth": 1, "num_heads": 2, "num_classes": 3, "input_size": 4, "patch_size": 2}


class RecordWeights(Callback):
    """The task's weights after every optimizer step (runs after the EMA callback, listed first)."""

    def __init__(self) -> None:
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(copy.deepcopy(pl_module.model.state_dict()))


def recipe_ema_args():
    """The EMA callback's init_args, the same in all nine paper recipes."""
    args = []
    for recipe in trained_from_scratch(list_recipes("dit/*_in1k256.yaml")):
        callbacks = yaml.safe_load(recipe.read_text())["trainer"]["callbacks"]
        args += [c.get("init_args", {}) for c in callbacks if c["class_path"].endswith("EMAWeightAveraging")]
    assert len(args) == 9 and all(a == args[0] for a in args)
    return args[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recipe_ema_starts_from_the_model_updates_every_step_and_is_the_checkpoint(tmp_path):
    args = recipe_ema_args()
    assert args == {"decay": 0.9999}  # every step from the first (update_every_n_steps=1, no start step)
    ema, record = EMAWeightAveraging(**args), RecordWeights()
    torch.manual_seed(0)
    task = Diffusion("dit_b_4_derf", model_args=TINY_LATENT)  # AdamW, lr 1e-3: each step moves every weight
    initial = copy.deepcopy(task.model.state_dict())
    data = torch.utils.data.TensorDataset(torch.randn(12, 4, 4, 4), torch.tensor([0, 1, 2] * 4))
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[ema, record])  # fmt: skip
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    assert len(record.steps) == 3
    # the average starts as a copy of the model (AveragedModel deep-copies it at setup), its first update copies
    # the weights after step 1, then w_ema <- d * w_ema + (1 - d) * w for every later optimizer step
    d = args["decay"]
    expected = {k: v.clone() for k, v in record.steps[0].items()}
    for weights in record.steps[1:]:
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
    averaged = {k[len("module.model."):]: v for k, v in ema._average_model.state_dict().items()
                if k.startswith("module.model.")}  # fmt: skip
    assert averaged.keys() == expected.keys()
    for k, v in expected.items():
        torch.testing.assert_close(averaged[k], v, rtol=0, atol=1e-7)
    key = "final_layer.linear.weight"
    assert not torch.equal(record.steps[-1][key], initial[key])  # training moved it ...
    assert (averaged[key] - record.steps[0][key]).abs().max() < (record.steps[-1][key] - initial[key]).abs().max()
    # ... and the checkpoint's state_dict (the default of export and sample) holds the average
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    stored = torch.load(ckpt, weights_only=True)
    assert "current_model_state" in stored
    for k, v in load_dit(str(ckpt)).state_dict().items():
        torch.testing.assert_close(v, averaged[k], rtol=0, atol=0)
