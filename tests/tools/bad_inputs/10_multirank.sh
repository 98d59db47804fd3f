# One rank's error ends the whole job at once (parallel::end_job_after_error): under
# mpirun -np 2 and strata-run -n 2, a bad output path found on rank 0 before training, or
# an error raised on one rank in the middle of training (STRATA_FAULT=<point>:<n>:<rank>:error),
# ends every rank within 15 s (the watchdog's timeout is 300 s), its one line printed once:
# no hang report, no second rank's line, no launcher banner; a bad flag, which fails every
# rank before MPI exists, is printed by rank 0 alone. Then every program refuses an
# output it cannot write before doing any work (core::check_writable), saying why.
printf 'x' >"$in/a-file"
mkdir -p "$in/a-folder"
fmnist=("$train_fmnist" --threads 1 --model mlp --batch 64 --max-steps 6 --log-every 1)
pipe=(--pp 2 --micro-batches 2)
lm=("$train_lm" --threads 1 --context 32 --batch 8 --eval-batches 2 --d-model 32 --ffn 64 --layers 2 --heads 2 --steps 6)
bad_input_table <<'TABLE'
mpirun fmnist pp: unwritable --checkpoint-dir   | --checkpoint-dir /proc/ckpt: directory /proc is not writable | 15 | "${mpi2[@]}" "${fmnist[@]}" "${pipe[@]}" --checkpoint-dir /proc/ckpt
mpirun fmnist pp: --trace-out /proc/x.json      | --trace-out /proc/x.json: directory /proc is not writable    | 15 | "${mpi2[@]}" "${fmnist[@]}" "${pipe[@]}" --trace-out /proc/x.json
mpirun fmnist pp: --metrics-out a directory     | --metrics-out .*a-folder: is a directory                    | 15 | "${mpi2[@]}" "${fmnist[@]}" "${pipe[@]}" --metrics-out "$in/a-folder"
mpirun fmnist dp: --checkpoint-dir under a file | --checkpoint-dir .*a-file/ckpt: .*a-file is not a directory | 15 | "${mpi2[@]}" "${fmnist[@]}" --checkpoint-dir "$in/a-file/ckpt"
mpirun fmnist dp: --hang-report in no folder    | --hang-report .*: no such directory                         | 15 | "${mpi2[@]}" "${fmnist[@]}" --hang-report "$out/missing/hang.json"
mpirun fmnist pp: rank 1 fails at step 2        | error: injected fault at train-step #2 on this rank         | 15 | env STRATA_FAULT=train-step:2:1:error "${mpi2[@]}" "${fmnist[@]}" "${pipe[@]}"
mpirun fmnist dp: rank 0 fails at step 2        | error: injected fault at train-step #2 on this rank         | 15 | env STRATA_FAULT=train-step:2:0:error "${mpi2[@]}" "${fmnist[@]}" --checkpoint-dir "$out/ckpt"
mpirun fmnist pp: both ranks fail at step 2     | error: injected fault at train-step #2 on this rank         | 15 | env STRATA_FAULT=train-step:2::error "${mpi2[@]}" "${fmnist[@]}" "${pipe[@]}"
mpirun lm pp: --metrics-out a directory         | --metrics-out .*a-folder: is a directory                    | 15 | "${mpi2[@]}" "${lm[@]}" "${pipe[@]}" --metrics-out "$in/a-folder"
mpirun lm pp: --trace-out /proc/x.json          | --trace-out /proc/x.json: directory /proc is not writable    | 15 | "${mpi2[@]}" "${lm[@]}" "${pipe[@]}" --trace-out /proc/x.json
mpirun lm dp: unwritable --checkpoint-dir       | --checkpoint-dir /proc/ckpt: directory /proc is not writable | 15 | "${mpi2[@]}" "${lm[@]}" --checkpoint-dir /proc/ckpt
mpirun lm dp: rank 1 fails at step 2            | error: injected fault at train-step #2 on this rank         | 15 | env STRATA_FAULT=train-step:2:1:error "${mpi2[@]}" "${lm[@]}"
mpirun fmnist: a bad flag on every rank        | The following argument was not expected: --bogus          | 15 | "${mpi2[@]}" "${fmnist[@]}" --bogus
mpirun lm pp: a bad number on every rank        | error: --log-every must be between                          | 15 | "${mpi2[@]}" "${lm[@]}" "${pipe[@]}" --log-every 0
mpirun MPMD: a bad flag on rank 1 only          | The following argument was not expected: --bogus          | 15 | mpirun --quiet --oversubscribe -np 1 "${fmnist[@]}" : -np 1 "${fmnist[@]}" --bogus
mpirun MPMD: ranks with different flags        | configuration differs across ranks: rank 1 has lr=0.1      | 15 | mpirun --quiet --oversubscribe -np 1 "${fmnist[@]}" --lr 0.05 : -np 1 "${fmnist[@]}" --lr 0.1
strata-run fmnist pp: --metrics-out a directory | --metrics-out .*a-folder: is a directory                    | 15 | "$run" -n 2 "${fmnist[@]}" "${pipe[@]}" --metrics-out "$in/a-folder"
strata-run fmnist pp: rank 1 fails at step 2    | error: injected fault at train-step #2 on this rank         | 15 | env STRATA_FAULT=train-step:2:1:error "$run" -n 2 "${fmnist[@]}" "${pipe[@]}"
strata-run fmnist dp: both ranks, a bad flag    | error: --log-every                                          | 15 | "$run" -n 2 "${fmnist[@]}" --log-every 0
TABLE
bad_input_table <<'TABLE'
schedule --trace-out /proc/x.json               | --trace-out /proc/x.json: directory /proc is not writable    | 10 | "$schedule" --schedule 1f1b --ranks 2 --micro-batches 4 --trace-out /proc/x.json
schedule --save in a missing folder             | --save .*missing/s.json: no such directory                  | 10 | "$schedule" --schedule 1f1b --ranks 2 --micro-batches 4 --save "$out/missing/s.json"
qmoe dict --out in a missing folder             | --out .*missing/d.qmoe: no such directory                   | 10 | "$qmoe" dict --out "$out/missing/d.qmoe"
qmoe synth --out in an unwritable folder        | --out /proc/synth: directory /proc is not writable          | 10 | "$qmoe" synth --out /proc/synth
qmoe synth --out under a file                   | --out .*a-file/synth: .*a-file is not a directory           | 10 | "$qmoe" synth --out "$in/a-file/synth"
extract --out in an unwritable folder           | --out /proc/sub: directory /proc is not writable            | 10 | "$extract" --checkpoint "$in/no-checkpoint" --granularity 32 --out /proc/sub
qfx --out a directory                           | --out .*a-folder: is a directory                            | 10 | "$qfx" --quick --threads 1 --out "$in/a-folder"
sparse --metrics-out /proc/m.jsonl              | --metrics-out /proc/m.jsonl: directory /proc is not writable | 10 | "$sparse" --threads 1 --metrics-out /proc/m.jsonl
accel model --trace /proc/t.json                | --trace /proc/t.json: directory /proc is not writable       | 10 | "$accel" model --model fmnist-mlp --trace /proc/t.json
codesign --json-out in a missing folder         | --json-out .*missing/r.jsonl: no such directory             | 10 | "$codesign" --json-out "$out/missing/r.jsonl"
TABLE
