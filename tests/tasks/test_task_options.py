"""The options every task shares (Task's keyword options) reach each task through ``**kwargs``.

jsonargparse follows ``super().__init__(..., **kwargs)`` to :class:`Task`, so the recipes, ``--help`` and the
checks of unknown keys see them as if each task listed them; a task built from Python records them all, and a
checkpoint's hyperparameters rebuild the same task.
"""

import contextlib
import inspect
import io

import pytest
import yaml
from jsonargparse import ArgumentParser

import derf_zoo.tasks as tasks
from derf_zoo.recipes import recipe_path
from derf_zoo.tasks import TASK_OPTIONS, DNALanguageModeling, ImageClassification, Task
from derf_zoo.training import lightning_cli

TASKS = [c for c in map(tasks.__dict__.get, tasks.__all__) if inspect.isclass(c) and issubclass(c, Task)]
TASKS.remove(Task)
DEFAULTS = {name: p.default for name, p in inspect.signature(Task.__init__).parameters.items() if name in TASK_OPTIONS}


def test_task_options_are_tasks_keyword_options():
    assert len(TASKS) >= 6
    assert set(DEFAULTS) == set(TASK_OPTIONS)
    kinds = {p.kind for name, p in inspect.signature(Task.__init__).parameters.items() if name in TASK_OPTIONS}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_the_parser_lists_every_shared_option_with_its_default_and_help(cls):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "model")
    defaults = parser.get_defaults().model
    for name in TASK_OPTIONS:
        assert defaults[name] == DEFAULTS[name], (cls.__name__, name)
    help_text = io.StringIO()
    parser.print_help(help_text)
    assert "--model.layer_decay" in help_text.getvalue()
    assert "layer-wise learning-rate decay" in help_text.getvalue()  # Task's docstring, found through **kwargs
    if cls is DNALanguageModeling:  # LanguageModeling's pad_token_id is fixed by the subclass: not an option
        assert "pad_token_id" not in help_text.getvalue()


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        lightning_cli(args)
    return exc.value.code, out.getvalue(), err.getvalue()


def test_a_misspelled_or_bad_shared_option_is_an_error():
    recipe = str(recipe_path("vit/vit_nano_derf_digits.yaml"))
    code, _, err = _cli(["fit", "-c", recipe, "--model.init_args.layer_deacy=0.5"])
    assert code != 0 and "layer_deacy" in err
    code, _, err = _cli(["fit", "-c", recipe, "--model.init_args.nonfinite=ignore"])
    assert code != 0 and "ignore" in err
    code, out, _ = _cli(["fit", "-c", recipe, "--model.init_args.layer_decay=0.5", "--print_config"])
    assert code == 0
    options = yaml.safe_load(out)["model"]["init_args"]
    assert options["layer_decay"] == 0.5 and options["nonfinite"] == "error" and options["teacher"] is None


@pytest.mark.parametrize(("cls", "model"), [(ImageClassification, "vit_nano_derf"),
                                            (DNALanguageModeling, "hyenadna_nano_derf")])
def test_a_task_built_in_python_records_every_option_and_rebuilds_from_them(cls, model):
    task = cls(model, layer_decay=0.7, nonfinite="skip")
    recorded = dict(task.hparams)
    assert set(TASK_OPTIONS) <= set(recorded)
    assert recorded["layer_decay"] == 0.7 and recorded["nonfinite"] == "skip"
    assert recorded["distill_temperature"] == DEFAULTS["distill_temperature"]  # not passed: recorded at its default
    assert dict(task.hparams_initial) == recorded
    assert "pad_token_id" not in recorded  # DNALanguageModeling fixes it; a reload must not pass it twice
    # What load_from_checkpoint does with a class that takes **kwargs: cls(**hyper_parameters).
    rebuilt = cls(**recorded)
    assert dict(rebuilt.hparams) == recorded
    assert rebuilt.layer_decay == 0.7 and rebuilt.nonfinite == "skip"
