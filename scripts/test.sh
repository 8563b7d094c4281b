#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the linter, the whole test suite and a strict docs build, offline.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ruff check derf_zoo tests benchmarks scripts
python -m pytest "$@"
# Broken links, missing pages or API references fail the build (generated pages: scripts/docs_hooks.py).
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet
