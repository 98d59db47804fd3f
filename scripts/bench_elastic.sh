#!/usr/bin/env bash
# fortunes-lm-mat (docs/BENCHMARKS.md) against dense fortunes-lm models of each FFN width
# trained alone for the same steps, then bench_elastic (quality, speed, extraction) and the
# loss-against-parameters plot. Two trainings run at a time, one thread each: the MatFormer
# run, and the four dense runs one after another (together about as long).
#
#   STEPS=300 OUT=bench-out/elastic scripts/bench_elastic.sh
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${STEPS:-300}"
out="${OUT:-bench-out/elastic}"
bash scripts/build.sh --target train_lm strata-extract bench_elastic
source scripts/blas_env.sh
mkdir -p "$out"
step_dir=$(printf 'step-%08d' "$steps")
common=(--steps "$steps" --eval-every 100 --threads 1 --log-every 50 --mix-n-match-batches 4)

echo "training fortunes-lm-mat and 4 dense models for $steps steps (logs in $out/*.log)"
build/examples/train_lm "${common[@]}" --matformer --checkpoint-dir "$out/mat" --overwrite \
  --metrics-out "$out/mat.jsonl" >"$out/mat.log" 2>&1 &
mat_pid=$!
dense=()
for ffn in 1024 512 256 128; do
  build/examples/train_lm "${common[@]}" --ffn "$ffn" --checkpoint-dir "$out/dense-$ffn" --overwrite \
    --metrics-out "$out/dense-$ffn.jsonl" >"$out/dense-$ffn.log" 2>&1
  dense+=("$out/dense-$ffn/$step_dir")
  echo "dense FFN $ffn done: $(grep -o 'validation loss [0-9.]*' "$out/dense-$ffn.log" | tail -1)"
done
wait "$mat_pid"
echo "fortunes-lm-mat done: $(grep -o 'validation loss [0-9.]*' "$out/mat.log" | tail -1)"

(IFS=,; build/bench/bench_elastic --universal "$out/mat/$step_dir" --dense "${dense[*]}") \
  | tee "$out/bench.txt"
/usr/bin/python3 scripts/plot_elastic.py "$out/bench.txt" -o "$out/elastic_loss_vs_params.png"
