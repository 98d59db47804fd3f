# strata-run across nodes (issue 19): a rendezvous that is missing, unreachable or
# malformed, a node that never joins, impossible node ranks, node ranges and restart
# counts, a bad straggler threshold or slow-down fault: one line,
# well before the rendezvous timeout would matter.
launch=("$run" --nproc-per-node 1 --rdzv-timeout 2)
fmnist_cmd=("$train_fmnist" --threads 1 --model mlp --max-steps 2)
rdzv_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bad_input_table <<'TABLE'
run: --nnodes 2 without --rdzv        | --nnodes 2 needs --rdzv HOST:PORT                    | 10 | "${launch[@]}" --nnodes 2 --node-rank 1 "${fmnist_cmd[@]}"
run: --node-rank beyond --nnodes      | --node-rank 2: expected 0..1 (--nnodes 2)         | 10 | "${launch[@]}" --nnodes 2 --node-rank 2 --rdzv 127.0.0.1:$rdzv_port "${fmnist_cmd[@]}"
run: --rdzv without a port            | --rdzv somehost: expected HOST:PORT                  | 10 | "${launch[@]}" --nnodes 2 --node-rank 1 --rdzv somehost "${fmnist_cmd[@]}"
run: --rdzv port out of range         | --rdzv 127.0.0.1:99999: the port must be a number   | 10 | "${launch[@]}" --nnodes 2 --node-rank 1 --rdzv 127.0.0.1:99999 "${fmnist_cmd[@]}"
run: nobody at --rdzv                 | no rendezvous there within 2 s                      | 10 | "${launch[@]}" --nnodes 2 --node-rank 1 --rdzv 127.0.0.1:$rdzv_port "${fmnist_cmd[@]}"
run: node 1 never joins               | node(s) 1 of 2 did not join within 2 s             | 10 | "${launch[@]}" --nnodes 2 --node-rank 0 --rdzv 127.0.0.1:$rdzv_port "${fmnist_cmd[@]}"
run: --max-restarts -1                | --max-restarts                                       | 10 | "${launch[@]}" --max-restarts -1 "${fmnist_cmd[@]}"
run: --rdzv-timeout 0                 | --rdzv-timeout                                       | 10 | "${launch[@]}" --rdzv-timeout 0 "${fmnist_cmd[@]}"
run: --nnodes MIN above MAX           | --nnodes 3:2: MIN 3 is more than MAX 2               | 10 | "${launch[@]}" --nnodes 3:2 --rdzv 127.0.0.1:$rdzv_port "${fmnist_cmd[@]}"
run: --nnodes 0                       | --nnodes: got .0., expected N or MIN:MAX             | 10 | "${launch[@]}" --nnodes 0 "${fmnist_cmd[@]}"
run: --nnodes 1:x                     | --nnodes: got .1:x., expected N or MIN:MAX           | 10 | "${launch[@]}" --nnodes 1:x "${fmnist_cmd[@]}"
run: fewer nodes than --nnodes MIN    | fewer than the --nnodes minimum of 2 joined          | 10 | "${launch[@]}" --nnodes 2:3 --node-rank 0 --rdzv 127.0.0.1:$rdzv_port "${fmnist_cmd[@]}"
run: --rejoin-timeout -1              | --rejoin-timeout                                     | 10 | "${launch[@]}" --rejoin-timeout -1 "${fmnist_cmd[@]}"
fmnist: --straggler-threshold -1      | --straggler-threshold                                | 10 | "${fmnist_cmd[@]}" --straggler-threshold -1
fmnist: STRATA_FAULT slow=abc         | action 'slow=abc', expected error, slow=<ms>          | 10 | env STRATA_FAULT=forward:1::slow=abc "${fmnist_cmd[@]}"
TABLE
