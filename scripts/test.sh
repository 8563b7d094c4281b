#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the linter, the whole test suite and a strict docs build, offline.
#   bash scripts/test.sh            everything: ruff, every test (slow ones included), the strict docs build (CI runs this)
#   bash scripts/test.sh --quick    the edit-test loop: ruff and the tests not marked slow, no docs build (about a minute)
# Other arguments pass through to pytest (bash scripts/test.sh --quick tests/norms -x).
quick=false
if [ "${1:-}" = "--quick" ]; then
  quick=true
  shift
fi
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ruff check derf_zoo tests benchmarks scripts
if "$quick"; then
  python -m pytest -m "not slow" "$@"
  exit
fi
python -m pytest "$@"
# Broken links, missing pages or API references fail the build (generated pages: scripts/docs_hooks.py).
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet
