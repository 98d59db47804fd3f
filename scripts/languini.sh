#!/usr/bin/env bash
# Languini (issue 21, docs/languini.md): trains the Transformer (fortunes-lm) and the LSTM
# (fortunes-lstm) at several compute classes with train_lm --compute-budget, fits a power
# law of validation loss against compute per architecture, plots both and reports where
# the fits cross (scripts/plot_languini.py).
#
#   scripts/languini.sh                       # budgets 60 180 600 s, --corpus bible
#   scripts/languini.sh --quick               # budgets 3 6 12 s of tiny models, for testing
#   scripts/languini.sh --budgets "30 60 120 240" --corpus fortunes --out out/lm-fortunes
#
# Options: --budgets "S..." (seconds of compute each run trains), --corpus NAME, --threads N,
# --out DIR (runs' metrics and logs; default out/languini), --plot PNG (default
# docs/images/languini.png; --quick: DIR/languini.png), --bin PATH (train_lm). Extra
# arguments after -- go to every train_lm run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
budgets="60 180 600" corpus=bible threads=1 out="$root/out/languini" plot="" quick=0
bin="$root/build/examples/train_lm"
extra=()
while (($#)); do
  case "$1" in
    --quick) quick=1; budgets="3 6 12"; shift ;;
    --budgets) budgets="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --plot) plot="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "languini: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "languini: no train_lm at $bin (build it: scripts/build.sh --target train_lm)" >&2; exit 1; }
[[ -n $plot ]] || { ((quick)) && plot="$out/languini.png" || plot="$root/docs/images/languini.png"; }
mkdir -p "$out"

# The two architectures at about the same parameter count (0.25M each: small enough for a
# loaded 2-core machine to take hundreds of steps a minute); --quick: tinier still.
common=(--threads "$threads" --corpus "$corpus" --batch 16 --context 64 --eval-every 0
        --eval-batches 10 --log-every 25 --lr 2e-3)
transformer=(--arch transformer --layers 2 --d-model 96 --heads 2 --ffn 384)
lstm=(--arch lstm --layers 1 --d-model 160)
if ((quick)); then
  common=(--threads "$threads" --corpus "$corpus" --batch 8 --context 64 --eval-every 0
          --eval-batches 4 --log-every 25 --lr 3e-3)
  transformer=(--arch transformer --layers 2 --d-model 64 --heads 2 --ffn 256)
  lstm=(--arch lstm --layers 1 --d-model 96)
fi

runs=()
for budget in $budgets; do
  for arch in transformer lstm; do
    name="$arch-$budget"
    declare -n model="$arch"
    echo "languini: $name: $arch with --compute-budget $budget s (log: $out/$name.log)"
    "$bin" "${common[@]}" "${model[@]}" --compute-budget "$budget" --metrics-out "$out/$name.jsonl" \
      "${extra[@]}" >"$out/$name.log" 2>&1 || { echo "languini: $name failed:" >&2; tail -5 "$out/$name.log" >&2; exit 1; }
    grep -a "compute budget" "$out/$name.log" | sed 's/^.*\] /  /'
    runs+=("$out/$name.jsonl")
  done
done
/usr/bin/python3 "$root/scripts/plot_languini.py" "${runs[@]}" -o "$plot" | tee "$out/fits.txt"
