#!/usr/bin/env bash
# State bytes and peak RSS per rank for DDP and ZeRO 1/2/3 at 2 and 4 ranks on a
# fortunes-lm of about 100M parameters (issue 18): one JSON line per configuration, then
# ZeRO 3's state bytes as a fraction of DDP's (targets: at most 0.55 at 2 ranks, 0.3 at 4).
#   bash bench/bench_zero_memory.sh [build/bench/bench_zero_memory] [extra flags...]
set -euo pipefail
bin="${1:-build/bench/bench_zero_memory}"
shift || true
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp)
for ranks in 2 4; do
  for zero in 0 1 2 3; do
    echo "== DDP/ZeRO $zero on $ranks ranks" >&2
    mpirun --quiet --oversubscribe -np "$ranks" "$bin" --zero "$zero" "$@" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for ranks in (2, 4):
    ddp = next(r["state_bytes"] for r in rows if r["ranks"] == ranks and r["zero"] == 0)
    for r in rows:
        if r["ranks"] == ranks:
            print(f'{ranks} ranks zero {r["zero"]}: state {r["state_bytes"] / 2**20:.0f} MiB '
                  f'({r["state_bytes"] / ddp:.2f}x DDP), peak RSS {r["peak_rss_mb"]:.0f} MB')
PY
rm -f "$out"
