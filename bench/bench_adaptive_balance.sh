#!/usr/bin/env bash
# The main job (scripts/demo.sh: fmnist-cnn, mpirun -np 2, --pp 2 --micro-batches 4
# --schedule 1f1b) with --balance time against --balance adaptive: each rank's idle
# fraction beside the schedule's theory (20% for 1F1B, K 2, M 4) and samples/s. The two
# alternate, REPEATS times each (medians), STEPS steps a run (train_fmnist measures after
# its warm-up of min(20, steps / 10) steps; adaptive's moves are done by then). Prints one
# line per run as it ends, then a table and one JSON line per balance.
#
#   bash bench/bench_adaptive_balance.sh [path/to/train_fmnist]   # STEPS=400 REPEATS=3
set -euo pipefail
bin="${1:-build/examples/train_fmnist}"
steps="${STEPS:-400}"
repeats="${REPEATS:-3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

field() { grep '"event":"final"' "$1" | python3 -c "import json,sys; r=json.load(sys.stdin); print(r['$2'] if '$2' != 'idle_fraction' else ' '.join('%.4f' % x for x in r['$2']))"; }

for i in $(seq "$repeats"); do
  for balance in time adaptive; do
    mpirun -np 2 --oversubscribe --bind-to core:overload-allowed "$bin" --model cnn \
      --max-steps "$steps" --pp 2 --micro-batches 4 --schedule 1f1b --balance "$balance" \
      --metrics-out "$tmp/$balance-$i.jsonl" >"$tmp/$balance-$i.log" 2>&1
    grep -h "adaptive balance at" "$tmp/$balance-$i.log" | sed 's/^/  /' || true
    echo "run $i --balance $balance: idle $(field "$tmp/$balance-$i.jsonl" idle_fraction)," \
      "$(field "$tmp/$balance-$i.jsonl" samples_per_s) samples/s"
  done
done
python3 - "$tmp" "$repeats" <<'PY'
import json, statistics, sys
tmp, repeats = sys.argv[1], int(sys.argv[2])
theory = 0.2  # 1F1B, K 2, M 4: (K - 1) / (M + K - 1)
rows = {}
for balance in ("time", "adaptive"):
    finals = []
    for i in range(1, repeats + 1):
        for line in open(f"{tmp}/{balance}-{i}.jsonl"):
            r = json.loads(line)
            if r.get("event") == "final":
                finals.append(r)
    idle = [statistics.median(f["idle_fraction"][k] for f in finals) for k in range(2)]
    sps = statistics.median(f["samples_per_s"] for f in finals)
    rows[balance] = (idle, sps)
base = rows["time"][1]
print(f"{'balance':10} {'idle rank 0':>12} {'idle rank 1':>12} {'theory':>8} {'samples/s':>10} {'vs time':>8}")
for balance, (idle, sps) in rows.items():
    print(f"{balance:10} {100*idle[0]:11.1f}% {100*idle[1]:11.1f}% {100*theory:7.1f}% {sps:10.0f} {sps/base:7.2f}x")
    print(json.dumps({"bench": "adaptive-balance", "case": f"main-job/{balance}", "idle_fraction": idle,
                      "theory": theory, "value": sps, "unit": "samples/s", "baseline": base,
                      "ratio": sps / base, "repeats": repeats}))
PY
