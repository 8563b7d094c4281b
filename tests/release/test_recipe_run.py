"""derf_zoo.release.train_recipe / one_thread: the one recipe run the demo parts and the releases share."""

import pytest
import torch

from derf_zoo.recipes import recipe_path
from derf_zoo.release import one_thread, train_recipe


def test_one_thread_restores_the_setting():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_a_run_records_its_curves_checkpoint_and_times_and_a_rerun_replaces_it(tmp_path):
    tiny = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--data.init_args.num_workers=0"]
    recipe = recipe_path("vit/vit_nano_derf_digits.yaml")
    run = train_recipe(recipe, tmp_path / "run", epochs=2, progress=False, extra_args=tiny,
                       curves=("val/acc1", "train/loss_epoch"))  # fmt: skip
    assert run.checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt" and run.checkpoint.is_file()
    assert len(run.curves["val/acc1"]) == 2 and len(run.curves["train/loss_epoch"]) == 2
    assert run.seconds > 0 and run.cpu_seconds > 0 and run.cli.trainer.global_step == 4
    assert list((tmp_path / "run").glob("lightning_logs/*/metrics.csv"))  # CSV logs in the run's folder
    again = train_recipe(recipe, tmp_path / "run", epochs=1, progress=False, extra_args=tiny)  # a demo rerun
    assert again.checkpoint.is_file() and again.cli.trainer.global_step == 2 and again.curves == {}
