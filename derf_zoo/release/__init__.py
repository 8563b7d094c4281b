"""Releasing weights, and the scaffolding the demo shares with it.

``derf-zoo demo`` and ``derf-zoo release`` do the same three things, so they are written once here:

- :func:`train_recipe` runs one recipe as the demo runs it (its own run folder, CSV logs, optional epoch override
  and per-epoch curves) and times it; :func:`one_thread` holds torch to one thread around it;
- :func:`paired_noise`, :func:`binomial_noise` and :func:`verdict` / :func:`verdict_sentence` compare two models
  on the same held-out items: two standard errors of the difference, and one wording for who wins;
- :func:`publish` writes a released Hub folder (weights, config, card) and returns its manifest entry;
  :func:`add_entries` writes entries into ``manifest.yaml`` through the YAML library, keeping every other entry,
  their order and the file's comments, and refusing to replace an entry unless asked;
- :mod:`derf_zoo.release.measures` holds the held-out measures they compare models with (DiT per-image loss,
  wav2vec 2.0 per-clip loss, GPT-2 per-window loss), which the conversion benchmark and the tests use too.
"""

from derf_zoo.release.compare import binomial_noise, paired_noise, verdict, verdict_sentence
from derf_zoo.release.manifest import ManifestEntryExistsError, add_entries
from derf_zoo.release.publish import Release, check_free, publish
from derf_zoo.release.runs import RecipeRun, one_thread, train_recipe

__all__ = ["ManifestEntryExistsError", "RecipeRun", "Release", "add_entries", "binomial_noise", "check_free",
           "one_thread", "paired_noise", "publish", "train_recipe", "verdict", "verdict_sentence"]
