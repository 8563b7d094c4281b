#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the linter and the whole test suite, offline.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ruff check derf_zoo tests benchmarks scripts
python -m pytest "$@"
