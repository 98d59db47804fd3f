#!/usr/bin/env bash
# strata-run beyond one node, and restarts (issue 19):
# - two agents on loopback as two nodes (1 rank each) form a 2-rank job whose losses
#   equal `strata-run -n 2`'s, bit for bit;
# - agents that disagree (--nproc-per-node) each say so in one line and exit non-zero;
# - a rank killed mid-run under --max-restarts 1: the job relaunches from its newest
#   checkpoint and ends 0, its final checkpoint byte-identical to an uninterrupted run's,
#   the restart in the metrics file; on two nodes as well;
# - killed twice under --max-restarts 1: the job ends non-zero, saying why;
# - a rank slowed on node 1 (STRATA_FAULT ...:slow) is named by the straggler report, with
#   its node and the operation where its extra time goes;
# - --nnodes 1:2: node 1's agent killed (a lost node) -> the job goes on on node 0 alone
#   after --rejoin-timeout; a new agent for node 1 -> the job grows back to 2 nodes; it
#   ends 0 with the losses of an uninterrupted run (the global batch never changed).
#   test_elastic.sh TRAIN_FMNIST STRATA_RUN
set -uo pipefail
train="$1" launcher="$2"
source "$(dirname "$0")/../cli_test_lib.sh"
common=(--model mlp --threads 1 --batch 64 --log-every 1)
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# two_nodes OUT ARGS...: node 0 and node 1 agents (1 rank each) of one job, the program
# train_fmnist ARGS; their stderr in OUT.node0 and OUT.node1; sets status0 and status1.
two_nodes() {
  local out="$1"; shift
  local port; port=$(free_port)
  local rdzv=(--nnodes 2 --nproc-per-node 1 --rdzv "127.0.0.1:$port" --rdzv-timeout 60)
  timeout -s KILL 300 "$launcher" "${rdzv[@]}" --node-rank 0 "$@" >"$out.out0" 2>"$out.node0" &
  local node0=$!
  timeout -s KILL 300 "$launcher" "${rdzv[@]}" --node-rank 1 "$@" >"$out.out1" 2>"$out.node1"
  status1=$?
  wait "$node0"; status0=$?
}

# ---- two nodes = strata-run -n 2
timeout -s KILL 300 "$launcher" -n 2 "$train" "${common[@]}" --max-steps 12 \
  --metrics-out "$tmp/one.jsonl" >/dev/null 2>"$tmp/one.err"
two_nodes "$tmp/two" "$train" "${common[@]}" --max-steps 12 --metrics-out "$tmp/two.jsonl"
if [[ $status0 -eq 0 && $status1 -eq 0 ]] && grep -q '"world_size":2' "$tmp/two.jsonl"; then
  expect_same_losses "two agents on loopback = strata-run -n 2" "$tmp/two.jsonl" "$tmp/one.jsonl" 1 12 1e-12
else
  fail "two agents: status $status0/$status1: $(tail -3 "$tmp/two.node0" "$tmp/two.node1")"
fi

# ---- agents that disagree: each says which node differs, in one line
port=$(free_port)
"$launcher" --nnodes 2 --node-rank 0 --nproc-per-node 1 --rdzv "127.0.0.1:$port" --rdzv-timeout 30 \
  "$train" "${common[@]}" --max-steps 2 >/dev/null 2>"$tmp/mismatch0" &
node0=$!
fails_with_one_line "agents with different --nproc-per-node (node 1)" \
  "--nproc-per-node: node 0 .* has 1 and node 1 has 2; every node must give the same" \
  "$launcher" --nnodes 2 --node-rank 1 --nproc-per-node 2 --rdzv "127.0.0.1:$port" --rdzv-timeout 30 \
  "$train" "${common[@]}" --max-steps 2 && pass "node 1 names the mismatch: $(cat "$tmp/stderr")"
wait "$node0"; status0=$?
if [[ $status0 -ne 0 && $(wc -l <"$tmp/mismatch0") -eq 1 ]] && grep -q "nproc-per-node" "$tmp/mismatch0"; then
  pass "node 0 names the mismatch: $(cat "$tmp/mismatch0")"
else
  fail "node 0 with a mismatched node 1: status $status0: $(cat "$tmp/mismatch0")"
fi

# ---- two agents claiming one node rank: the second says so (the first is alive, not lost)
port=$(free_port)
claim=(--nnodes 3 --nproc-per-node 1 --rdzv "127.0.0.1:$port" --rdzv-timeout 20)
"$launcher" "${claim[@]}" --node-rank 0 "$train" "${common[@]}" --max-steps 2 >/dev/null 2>&1 &
claim0=$!
"$launcher" "${claim[@]}" --node-rank 1 "$train" "${common[@]}" --max-steps 2 >/dev/null 2>&1 &
claim1=$!
sleep 1
fails_with_one_line "a second agent with --node-rank 1" \
  "--node-rank 1: another agent of the job at 127.0.0.1:$port already has node rank 1" \
  "$launcher" "${claim[@]}" --node-rank 1 "$train" "${common[@]}" --max-steps 2 &&
  pass "a second agent for node 1 is refused: $(cat "$tmp/stderr")"
kill "$claim0" "$claim1" 2>/dev/null; wait "$claim0" "$claim1" 2>/dev/null

# ---- restarts: the final checkpoint of a run with one crash equals an uninterrupted run's
ckpt=(--checkpoint-every 2 --max-steps 8)
timeout -s KILL 300 "$launcher" -n 2 "$train" "${common[@]}" "${ckpt[@]}" \
  --checkpoint-dir "$tmp/clean" >/dev/null 2>&1 || fail "uninterrupted run failed"
# Rank 1 dies at its 5th step (after the checkpoint of step 4); the relaunched job resumes
# there and counts its steps anew, so the fault does not come back before step 8.
STRATA_FAULT=train-step:5:1 timeout -s KILL 300 "$launcher" -n 2 --max-restarts 1 "$train" \
  "${common[@]}" "${ckpt[@]}" --checkpoint-dir "$tmp/restarted" \
  --metrics-out "$tmp/restarted.jsonl" >/dev/null 2>"$tmp/restarted.err"
status=$?
final=$(ls "$tmp/clean" | sort -V | tail -1)
if [[ $status -eq 0 ]] && grep -q "strata-run: restart 1 of 1: rank 1 (pid [0-9]*) was killed by signal 9" "$tmp/restarted.err" &&
   diff -r "$tmp/clean/$final" "$tmp/restarted/$final" >/dev/null &&
   grep -q '"event":"restart"' "$tmp/restarted.jsonl"; then
  pass "--max-restarts 1, rank 1 killed at step 5: status 0, $final byte-identical to the uninterrupted run's"
else
  fail "--max-restarts 1: status $status, $final: $(diff -rq "$tmp/clean/$final" "$tmp/restarted/$final" 2>&1 | head -3); $(grep strata-run "$tmp/restarted.err")"
fi

# ---- the same on two nodes
STRATA_FAULT=train-step:5:1 two_nodes "$tmp/two_restart" --max-restarts 1 "$train" "${common[@]}" \
  "${ckpt[@]}" --checkpoint-dir "$tmp/two_restarted"
if [[ $status0 -eq 0 && $status1 -eq 0 ]] && diff -r "$tmp/clean/$final" "$tmp/two_restarted/$final" >/dev/null &&
   grep -q "restart 1 of 1: rank 1 (node 1, pid [0-9]*) was killed by signal 9" "$tmp/two_restart.node0"; then
  pass "two nodes, --max-restarts 1: both agents restart, $final byte-identical"
else
  fail "two nodes, --max-restarts 1: status $status0/$status1: $(grep strata-run "$tmp/two_restart.node0" "$tmp/two_restart.node1")"
fi

# ---- killed twice with one restart allowed: non-zero, with the reason
STRATA_FAULT=train-step:5:1 timeout -s KILL 300 "$launcher" -n 2 --max-restarts 1 "$train" \
  "${common[@]}" --checkpoint-every 2 --max-steps 12 --checkpoint-dir "$tmp/twice" \
  >/dev/null 2>"$tmp/twice.err"
status=$?
if [[ $status -eq 137 ]] && grep -q "was killed by signal 9 (Killed); no restarts left (--max-restarts 1)" "$tmp/twice.err"; then
  pass "killed twice, --max-restarts 1: status 137, $(grep 'no restarts left' "$tmp/twice.err")"
else
  fail "killed twice: status $status: $(grep strata-run "$tmp/twice.err")"
fi
# ---- --checkpoint-every auto: an interval from measured costs, checkpoints on it, no probe left
timeout -s KILL 300 "$train" "${common[@]}" --max-steps 40 --checkpoint-dir "$tmp/auto" \
  --checkpoint-every auto --mtbf-hours 0.001 --metrics-out "$tmp/auto.jsonl" >"$tmp/auto.err" 2>&1
status=$?
record=$(grep '"event":"checkpoint_interval"' "$tmp/auto.jsonl" 2>/dev/null)
every=$(sed 's/.*"every_steps":\([0-9]*\).*/\1/' <<<"$record")
anchor=$(sed 's/.*"step":\([0-9]*\).*/\1/' <<<"$record")
if [[ $status -eq 0 && -n $every && -n $anchor ]] && [[ ! -e $tmp/auto/.checkpoint-interval-probe ]]; then
  expected=$(for ((s = anchor + every; s < 40; s += every)); do printf 'step-%08d\n' "$s"; done; printf 'step-%08d\n' 40)
  got=$(ls "$tmp/auto")
  if [[ $(sort -u <<<"$expected") == "$got" ]]; then
    pass "--checkpoint-every auto: every $every steps from step $anchor ($(grep -o 'a failure costs [0-9]* s' "$tmp/auto.err"))"
  else
    fail "--checkpoint-every auto: every $every from $anchor, checkpoints $(tr '\n' ' ' <<<"$got")"
  fi
else
  fail "--checkpoint-every auto: status $status, record '$record': $(tail -3 "$tmp/auto.err")"
fi
# ---- a straggler: rank 1 (node 1) sleeps 30 ms in every forward from its 3rd on; rank 0
# waits for it in the all-reduce, so only rank 1's own work per step stands out.
STRATA_FAULT=forward:3:1:slow=30 two_nodes "$tmp/slow" "$train" "${common[@]}" --max-steps 120 \
  --timeout 5 --metrics-out "$tmp/slow.jsonl"
record=$(grep '"event":"straggler"' "$tmp/slow.jsonl" 2>/dev/null | head -1)
if [[ $status0 -eq 0 && $status1 -eq 0 ]] && grep -q '"rank":1,' <<<"$record" &&
  grep -q '"node":1,' <<<"$record" && grep -q '"where":"forward"' <<<"$record" &&
  grep -q "straggler at step [0-9]*: rank 1 (node 1, host .*) is a straggler: .* is in forward" \
    "$tmp/slow.out0" "$tmp/slow.node0"; then
  pass "a slowed rank is named: $(grep -h -o 'rank 1 (node 1.*' "$tmp/slow.out0" "$tmp/slow.node0" | head -1)"
else
  fail "straggler: status $status0/$status1, record '$record': $(grep -h straggler "$tmp/slow.out0" "$tmp/slow.node0" | head -2)"
fi
# ---- --nnodes 1:2: lose node 1, go on with node 0, grow back when node 1 returns
# Every step takes 50 ms more on every rank, so that the job lives long enough to see it.
elastic=(--checkpoint-every 10 --max-steps 400 --timeout 20 --checkpoint-dir "$tmp/grow"
  --metrics-out "$tmp/grow.jsonl")
port=$(free_port)
rdzv=(--nnodes 1:2 --nproc-per-node 1 --rdzv "127.0.0.1:$port" --rdzv-timeout 30
  --rejoin-timeout 3 --max-restarts 1)
export STRATA_FAULT=train-step:1::slow=50
timeout -s KILL 300 "$launcher" "${rdzv[@]}" --node-rank 0 "$train" "${common[@]}" "${elastic[@]}" \
  >"$tmp/grow.out0" 2>"$tmp/grow.node0" &
node0=$!
"$launcher" "${rdzv[@]}" --node-rank 1 "$train" "${common[@]}" "${elastic[@]}" \
  >/dev/null 2>"$tmp/grow.node1a" &
node1=$!
# Lose node 1 (its agent and, with it, its rank) once the job has checkpointed.
for ((i = 0; i < 600; i++)); do [[ -e $tmp/grow/step-00000020 ]] && break; sleep 0.1; done
kill -KILL "$node1"; wait "$node1" 2>/dev/null
for ((i = 0; i < 600; i++)); do
  grep -q "attempt 1 runs on node(s) 0 (1 of 2)" "$tmp/grow.node0" && break; sleep 0.1
done
# Node 1 comes back: a new agent takes its place and the job grows at the next attempt.
timeout -s KILL 300 "$launcher" "${rdzv[@]}" --node-rank 1 "$train" "${common[@]}" "${elastic[@]}" \
  >/dev/null 2>"$tmp/grow.node1b"
status1=$?
wait "$node0"; status0=$?
unset STRATA_FAULT
restart=$(grep '"event":"restart"' "$tmp/grow.jsonl" 2>/dev/null)
if [[ $status0 -eq 0 && $status1 -eq 0 ]] &&
  grep -q "node 1 was lost" "$tmp/grow.node0" &&
  grep -q "attempt 1 runs on node(s) 0 (1 of 2): world size 1" "$tmp/grow.node0" &&
  grep -q "node 1 is ready to join the job" "$tmp/grow.node0" &&
  grep -q "attempt 2 runs on node(s) 0, 1 (2 of 2): world size 2" "$tmp/grow.node0" &&
  grep -q '"previous_world_size":1' <<<"$restart" && grep -q '"world_size":2' <<<"$restart" &&
  grep -q '"earlier":\[{"reason":"node 1 was lost' <<<"$restart"; then
  pass "--nnodes 1:2: lost node 1, went on with 1 node, grew back to 2: $restart"
else
  fail "--nnodes 1:2: status $status0/$status1, restart '$restart': $(grep strata-run "$tmp/grow.node0" | tail -4)"
fi
# The global batch never changed, and each part of the job resumed exactly: the part on
# one node ends with the checkpoint a one-process resume writes, the part on two with
# the one `strata-run -n 2 --resume` writes, byte for byte.
mapfile -t resumed < <(sed -n 's/.*resumed from .* at step \([0-9]*\).*/\1/p' "$tmp/grow.out0")
if [[ ${#resumed[@]} -eq 2 ]]; then
  shrunk=$(printf 'step-%08d' "${resumed[1]}")
  timeout -s KILL 300 "$train" "${common[@]}" --checkpoint-every 10 --max-steps "${resumed[1]}" \
    --resume "$tmp/grow/$(printf 'step-%08d' "${resumed[0]}")" --checkpoint-dir "$tmp/alone" \
    >/dev/null 2>&1
  timeout -s KILL 300 "$launcher" -n 2 "$train" "${common[@]}" --checkpoint-every 10 \
    --max-steps 400 --resume "$tmp/grow/$shrunk" --checkpoint-dir "$tmp/pair" >/dev/null 2>&1
  if diff -r "$tmp/alone/$shrunk" "$tmp/grow/$shrunk" >/dev/null &&
    diff -r "$tmp/pair/step-00000400" "$tmp/grow/step-00000400" >/dev/null; then
    pass "--nnodes 1:2: steps ${resumed[0]}..${resumed[1]} on one node = one process, ${resumed[1]}..400 on two = strata-run -n 2, byte for byte"
  else
    fail "--nnodes 1:2 resumes: $(diff -rq "$tmp/alone/$shrunk" "$tmp/grow/$shrunk" 2>&1 | head -2) $(diff -rq "$tmp/pair/step-00000400" "$tmp/grow/step-00000400" 2>&1 | head -2)"
  fi
else
  fail "--nnodes 1:2: expected two resumes, got '${resumed[*]}'"
fi
finish
