#!/usr/bin/env bash
# The Fashion-MNIST norm benchmark on one GPU: the CPU grid's norms and paired seeds with a ViT-S-sized model
# (recipes/vit/vit_small_fmnist.yaml), the same outputs (results.md, results.json, curves.png, one result file
# and Hub folder per run), aimed at under 10 minutes on an H100/H200.
#
#   bash benchmarks/fmnist_gpu.sh                      # 5 norms x 5 seeds, 4 runs sharing the GPU at a time
#   JOBS=6 SEEDS=5 NORMS="all" bash benchmarks/fmnist_gpu.sh
#   DATA_ROOT=/path/to/fashion-mnist OUT=outputs/fmnist_gpu bash benchmarks/fmnist_gpu.sh
#   EXTRA="--epochs 1 --set trainer.limit_train_batches=2" bash benchmarks/fmnist_gpu.sh   # a smoke test
#
# The runs are small (49 tokens), so one run alone leaves an H200 mostly idle: JOBS processes each take every
# JOBS-th run of the grid (--shard K/N). Like the CPU grid it is resumable: run it again and finished runs are
# skipped. Data: DATA_ROOT, else $DERF_ZOO_FASHION_MNIST, else /usr/share/datasets/fashion-mnist (Debian's
# dataset-fashion-mnist; `apt-get download dataset-fashion-mnist && dpkg -x *.deb DIR` without root).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-outputs/benchmark_fmnist_gpu}
JOBS=${JOBS:-4}
SEEDS=${SEEDS:-5}
NORMS=${NORMS:-default}
RECIPE=${RECIPE:-vit/vit_small_fmnist.yaml}
ARGS=(fmnist --recipe "$RECIPE" --out "$OUT" --seeds "$SEEDS" --norms $NORMS)
[[ -n "${DATA_ROOT:-}" ]] && ARGS+=(--data-root "$DATA_ROOT")
# shellcheck disable=SC2206
[[ -n "${EXTRA:-}" ]] && ARGS+=($EXTRA)

mkdir -p "$OUT"
"$PYTHON" -m derf_zoo.commands.benchmark "${ARGS[@]}" --dry-run
start=$(date +%s)
pids=()
for ((k = 0; k < JOBS; k++)); do
  # Each process keeps to a few CPU threads: the GPU does the work, and JOBS processes share 16 cores.
  OMP_NUM_THREADS=2 "$PYTHON" -m derf_zoo.commands.benchmark "${ARGS[@]}" --threads 2 --shard "$k/$JOBS" \
    >"$OUT/shard$k.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "grid: $(($(date +%s) - start)) s with $JOBS processes (logs: $OUT/shard*.log)"
if ((status)); then tail -n 30 "$OUT"/shard*.log; fi
"$PYTHON" -m derf_zoo.commands.benchmark "${ARGS[@]}" --report-only
exit $status
