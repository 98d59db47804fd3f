#!/usr/bin/env bash
# Expert-parallel training throughput of fortunes-lm-moe (8 experts of FFN 512, top-2;
# BENCHMARKS.md): train_lm --moe on 1 rank against 2 ranks with the experts spread over
# both (--ep 2), and, for reference, 2 plain data-parallel ranks holding every expert
# (--ep 1). Every run trains the same global batch (32 x 128 bytes) for STEPS steps (after
# train_lm's warm-up) with 1 thread per rank; prints a table and one JSON line per run,
# tokens/s against the 1-rank run.
#
#   bash bench/bench_moe_ep.sh [path/to/train_lm]     # STEPS=30 by default
set -euo pipefail
bin="${1:-build/examples/train_lm}"
steps="${STEPS:-30}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

common=(--moe --steps "$steps" --threads 1 --eval-every 0 --eval-batches 1 --log-every 10)
tokens_per_s() { grep '"event":"final"' "$1" | sed 's/.*"tokens_per_s":\([0-9.e+-]*\).*/\1/'; }

"$bin" "${common[@]}" --metrics-out "$tmp/np1.jsonl" >/dev/null
base=$(tokens_per_s "$tmp/np1.jsonl")
printf '%-22s %10.0f tokens/s\n' "1 rank" "$base"
echo "{\"bench\":\"moe\",\"case\":\"ep-training/np1\",\"value\":$base,\"unit\":\"tokens/s\",\"baseline\":$base,\"ratio\":1,\"steps\":$steps}"
for ep in 2 1; do
  mpirun -np 2 "$bin" "${common[@]}" --ep "$ep" --metrics-out "$tmp/np2-ep$ep.jsonl" >/dev/null
  value=$(tokens_per_s "$tmp/np2-ep$ep.jsonl")
  ratio=$(awk -v a="$value" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
  printf '%-22s %10.0f tokens/s  %sx of 1 rank\n' "2 ranks, ep $ep" "$value" "$ratio"
  echo "{\"bench\":\"moe\",\"case\":\"ep-training/np2-ep$ep\",\"value\":$value,\"unit\":\"tokens/s\",\"baseline\":$base,\"ratio\":$ratio,\"steps\":$steps}"
done
