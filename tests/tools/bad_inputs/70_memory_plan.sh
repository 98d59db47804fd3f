# strata-accel memory-plan (issue 20): bad graphs, a scratchpad below the largest op's
# working set, unknown methods and models. Each is one line naming the thing.

mp_graph() { printf '{"tensors": [%s], "ops": [%s]}' "$1" "$2" >"$in/$3"; }
mp_t='{"id": 0, "bytes": 64, "kind": "input"}, {"id": 1, "bytes": 32, "kind": "activation"}, {"id": 2, "bytes": 16, "kind": "output"}'
mp_graph "$mp_t" '{"id": 0, "name": "a", "inputs": [0], "outputs": [1]}, {"id": 1, "name": "b", "inputs": [1], "outputs": [2]}' mp-good.json
mp_graph "$mp_t" '{"id": 0, "name": "a", "inputs": [0, 2], "outputs": [1]}, {"id": 1, "name": "b", "inputs": [1], "outputs": [2]}' mp-cycle.json
mp_graph "$mp_t" '{"id": 0, "name": "a", "inputs": [0, 7], "outputs": [1]}, {"id": 1, "name": "b", "inputs": [1], "outputs": [2]}' mp-undeclared.json
mp_graph '{"id": 0, "bytes": 64, "kind": "input"}, {"id": 0, "bytes": 32, "kind": "activation"}' '{"id": 0, "name": "a", "inputs": [0], "outputs": [1]}' mp-duplicate.json
mp_graph '{"id": 0, "bytes": 64, "kind": "tensor"}' '' mp-kind.json
mp_graph '{"id": 0, "bytes": -4, "kind": "input"}' '' mp-bytes.json
printf '{"tensors": [' >"$in/mp-garbage.json"

bad_input_table <<'TABLE'
memory-plan cycle                 | mp-cycle.json: the ops form a cycle .op 0 'a'                    | 20 | "$accel" memory-plan --graph "$in/mp-cycle.json" --scratchpad 4096 --methods lru
memory-plan undeclared tensor     | mp-undeclared.json: op 0 .'a'. uses tensor id 7, which is not declared | 20 | "$accel" memory-plan --graph "$in/mp-undeclared.json" --scratchpad 4096 --methods lru
memory-plan duplicate tensor id   | mp-duplicate.json: tensor id 0 is declared twice                 | 20 | "$accel" memory-plan --graph "$in/mp-duplicate.json" --scratchpad 4096 --methods lru
memory-plan unknown tensor kind   | mp-kind.json: field 'tensors.0..kind': got .tensor., expected input| 20 | "$accel" memory-plan --graph "$in/mp-kind.json" --scratchpad 4096
memory-plan negative bytes        | mp-bytes.json: field 'tensors.0..bytes': got -4            | 20 | "$accel" memory-plan --graph "$in/mp-bytes.json" --scratchpad 4096
memory-plan graph not JSON        | mp-garbage.json: not JSON                                        | 20 | "$accel" memory-plan --graph "$in/mp-garbage.json" --scratchpad 4096
memory-plan graph missing         | --graph.*no-such.json                                            | 20 | "$accel" memory-plan --graph "$in/no-such.json" --scratchpad 4096
memory-plan scratchpad too small  | --scratchpad 95 bytes: op 'a' .id 0. needs 96 bytes.*at least 96 bytes | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 95 --methods lru
memory-plan scratchpad zero       | --scratchpad                                                     | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 0
memory-plan unknown method        | --methods fifo: unknown method, expected ilp, lru, belady         | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 4096 --methods lru,fifo
memory-plan unknown model         | --model resnet: unknown, expected fmnist-cnn                     | 20 | "$accel" memory-plan --model resnet --scratchpad 4096
memory-plan neither graph nor model | give --model NAME or --graph FILE                              | 20 | "$accel" memory-plan --scratchpad 4096
memory-plan --graph and --model   | excludes                                                         | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --model fmnist-cnn --scratchpad 4096
memory-plan --train without model | --train.*--model                                                 | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --train --scratchpad 4096
memory-plan time limit negative   | --time-limit                                                     | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 4096 --time-limit -1
TABLE

# Built without COIN-OR CBC, the ilp methods say so and the others still work.
if "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 4096 --methods ilp >/dev/null 2>&1; then :; else
bad_input_table <<'TABLE'
memory-plan ilp without CBC       | --methods ilp: unavailable, this strata-accel was built without COIN-OR CBC | 20 | "$accel" memory-plan --graph "$in/mp-good.json" --scratchpad 4096 --methods ilp
TABLE
fi
