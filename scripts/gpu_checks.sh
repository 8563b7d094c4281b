#!/usr/bin/env bash
# The fast paths on a real GPU (issue 9): run on a lent CUDA machine (sized for one H200, ~6 minutes).
#
#   1. the kernel tests on CUDA: Triton and the fused torch path against eager, first and second order,
#      extreme inputs, bf16/fp16 (tests/norms/test_kernel_grads.py with DERF_ZOO_TEST_DEVICE=cuda);
#   2. the norm benchmark: Derf and DyT forward and forward+backward against the fused LayerNorm and a copy
#      (achieved bandwidth), ratios measured side by side in one run, and whether the targets are met
#      (Derf fwd+bwd <= 1.1x LayerNorm, >= 70% of copy bandwidth), in float32 and bfloat16;
#   3. a ViT-B/16 training step: timm's LayerNorm ViT against derf_zoo's LayerNorm and Derf ViTs.
#
# Figures go to benchmarks/results/gpu_<date>.md (tables), .json (numbers and stage results) and .log (all
# output). Every stage has its own time limit and a failing stage does not stop the next ones; the exit status
# is 1 if any stage failed. It needs python3 with torch (a CUDA build, which ships Triton); derf_zoo runs from
# this checkout (PYTHONPATH), nothing has to be installed. Missing pure-python dependencies (pytest, timm,
# huggingface_hub, safetensors, pyyaml, rich) are installed from $WHEELHOUSE if set (offline), else pip is tried
# briefly; stages that still lack them fail with the reason.
#
#   bash scripts/gpu_checks.sh                    # on the GPU machine
#   DEVICE=cpu QUICK=1 bash scripts/gpu_checks.sh # smoke test of the same code paths on a CPU
#
# Environment: DEVICE (cuda), PYTHON (.venv/bin/python if present, else python3), WHEELHOUSE, QUICK (0),
# RESULTS (benchmarks/results), VIT_BATCH (64 on CUDA).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
RESULTS="${RESULTS:-benchmarks/results}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
stamp="$(date +%Y%m%d_%H%M%S)"
mkdir -p "$RESULTS"
base="$RESULTS/gpu_${stamp}"
[ "$DEVICE" = "cuda" ] || base="$RESULTS/${DEVICE}_${stamp}"
md="$base.md" log="$base.log" json="$base.json"
start=$SECONDS

# This checkout's derf_zoo wins over any installed copy; no network for the Hub.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

exec > >(tee -a "$log") 2>&1

say() { echo "[gpu_checks $(date +%H:%M:%S) +$((SECONDS - start))s] $*"; }

# ---- environment ------------------------------------------------------------------------------------------
say "python: $PYTHON; device: $DEVICE; results: $base.{md,json,log}"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  say "FATAL: $PYTHON cannot import torch"
  exit 2
fi
"$PYTHON" - "$DEVICE" <<'EOF'
import sys, torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("FATAL: DEVICE=cuda but torch sees no GPU")
    print("GPU:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed (the Triton tests and benchmark rows will be skipped)")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv || true

missing="$("$PYTHON" - <<'EOF'
import importlib.util
mods = {"pytest": "pytest", "timm": "timm", "huggingface_hub": "huggingface_hub", "safetensors": "safetensors",
        "yaml": "pyyaml", "rich": "rich"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
EOF
)"
if [ -n "$missing" ]; then
  say "missing: $missing"
  if [ -n "${WHEELHOUSE:-}" ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" $missing || say "install from $WHEELHOUSE failed"
  else
    # No network is expected there: fail fast rather than wait on retries. --no-deps: never let pip replace the
    # machine's CUDA torch (timm -> torchvision pins an exact torch).
    timeout 90 "$PYTHON" -m pip install --quiet --no-deps --retries 0 --timeout 5 $missing ||
      say "pip could not install: $missing"
  fi
fi
"$PYTHON" -c "import derf_zoo, sys; print('derf_zoo from', derf_zoo.__file__)" || say "derf_zoo does not import (see above)"

declare -A status
failed=0
# stage NAME LIMIT_SECONDS OUTPUT_FILE|- COMMAND...: run with a time limit (its output also copied to OUTPUT_FILE),
# record the result, never abort the script.
stage() {
  local name="$1" limit="$2" out="$3"
  shift 3
  say "stage $name (limit ${limit}s): $*"
  local t0=$SECONDS rc=0
  if [ "$out" = "-" ]; then
    timeout --kill-after=10 "$limit" "$@" || rc=$?
  else
    timeout --kill-after=10 "$limit" "$@" | tee "$out" || rc=${PIPESTATUS[0]}
  fi
  if [ "$rc" -eq 0 ]; then
    status[$name]="ok"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status[$name]="failed (time limit ${limit}s)"
    failed=1
  else
    status[$name]="failed (exit $rc)"
    failed=1
  fi
  say "stage $name: ${status[$name]} in $((SECONDS - t0))s"
}

{
  echo "# GPU checks $stamp"
  echo
  echo "\`bash scripts/gpu_checks.sh\` (DEVICE=$DEVICE QUICK=$QUICK) at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
} >>"$md"

# ---- 1. kernel tests on the device ---------------------------------------------------------------------------
stage kernel_tests 240 - env DERF_ZOO_TEST_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -rfs -p no:cacheprovider \
  tests/norms/test_kernel_grads.py --junitxml="$base.tests.xml"
{
  echo "## Kernel tests (tests/norms/test_kernel_grads.py on $DEVICE): ${status[kernel_tests]}"
  echo
} >>"$md"

# ---- 2. norm benchmark ---------------------------------------------------------------------------------------
if [ "$QUICK" = "1" ]; then
  shapes_fp32=tiny shapes_bf16=tiny repeats=2
else
  shapes_fp32=vit,gpt2,big shapes_bf16=vit,big repeats=20
fi
stage norms_float32 150 - "$PYTHON" benchmarks/norms.py --device "$DEVICE" --dtype float32 --shapes "$shapes_fp32" \
  --repeats "$repeats" --json "$base.norms_float32.json" --markdown "$md"
stage norms_bfloat16 100 - "$PYTHON" benchmarks/norms.py --device "$DEVICE" --dtype bfloat16 --shapes "$shapes_bf16" \
  --repeats "$repeats" --json "$base.norms_bfloat16.json" --markdown "$md"

# ---- 3. ViT-B training step ----------------------------------------------------------------------------------
if [ "$QUICK" = "1" ]; then vit_args=(--batch 1 --repeats 1); else vit_args=(--batch "${VIT_BATCH:-64}" --repeats 5); fi
stage vit_step 180 "$base.vit_step.txt" "$PYTHON" benchmarks/vit_step.py --device "$DEVICE" "${vit_args[@]}"
{
  echo "## ViT-B/16 training step: ${status[vit_step]}"
  echo
  echo '```'
  cat "$base.vit_step.txt" 2>/dev/null || true
  echo '```'
} >>"$md"

# ---- summary -------------------------------------------------------------------------------------------------
"$PYTHON" - "$json" "$base" "$((SECONDS - start))" "$(for k in "${!status[@]}"; do echo "$k=${status[$k]}"; done)" <<'EOF'
import json, sys
from pathlib import Path
out, base, seconds, lines = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
summary = {"seconds": seconds, "stages": dict(line.split("=", 1) for line in lines.splitlines() if line)}
for dtype in ("float32", "bfloat16"):
    p = Path(f"{base}.norms_{dtype}.json")
    if p.exists():
        summary[f"norms_{dtype}"] = json.loads(p.read_text())
Path(out).write_text(json.dumps(summary, indent=2))
print("stages:", summary["stages"])
for dtype in ("float32", "bfloat16"):
    for r in summary.get(f"norms_{dtype}", {}).get("results", []):
        t = r["targets"]["Derf"]
        print(f"{dtype} {tuple(r['shape'])}: Derf [{t['path']}] fwd+bwd {t['train_vs_layernorm']:.2f}x LayerNorm "
              f"({'met' if t['met_train_vs_layernorm'] else 'NOT met'}), {t['train_bandwidth_vs_copy']:.0%} of copy "
              f"bandwidth ({'met' if t['met_train_bandwidth'] else 'NOT met'})")
EOF
say "done in $((SECONDS - start))s: $md, $json, $log"
exit "$failed"
