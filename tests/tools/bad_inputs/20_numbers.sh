# Every number checked, before anything is allocated (issue 23): for each program, a flag
# that is not a number, below or above its stated range, too large for its type, NaN or
# infinite; a request too large for this machine's memory, refused with the amount before it
# is allocated; cost arithmetic that overflows 64 bits; accelerator spec fields out of range.
# Every row must fail at once (a hang is a failure).

# Spec files with a field out of range (a preset with one field replaced).
echo '{"preset": "generic-32", "rows": 9223372036854775807}' >"$in/rows.json"
echo '{"preset": "generic-32", "cols": 100000}' >"$in/cols.json"
echo '{"preset": "generic-32", "clock_mhz": 1e300}' >"$in/clock.json"
echo '{"preset": "generic-32", "word_bytes": 4096}' >"$in/word.json"
echo '{"preset": "generic-32", "sram_kib": {"ifmap": 1e30}}' >"$in/sram.json"
echo '{"preset": "generic-32", "energy_pj": {"mac": 1e300}}' >"$in/energy.json"
echo '{"preset": "pim-gpt", "pim": {"banks": 4611686018427387904}}' >"$in/banks.json"
# A small synthetic MoE checkpoint for strata-qmoe compress (model width 256).
"$qmoe" synth --out "$in/moe" --layers 1 --experts 2 --hidden 8 >/dev/null

threads_range="must be between 1 and [0-9]*, got"
bad_input_table <<'TABLE'
# strata-schedule
schedule --ranks abc                 | ^error: --ranks: 'abc' is not a number$                                   | 10 | "$schedule" --ranks abc
schedule --ranks 0                   | ^error: --ranks must be between 1 and 1024, got 0$                         | 10 | "$schedule" --ranks 0
schedule --ranks 100000              | ^error: --ranks must be between 1 and 1024, got 100000$                    | 10 | "$schedule" --ranks 100000 --micro-batches 100000
schedule --micro-batches 1.5         | ^error: --micro-batches: '1.5' is not a whole number$                      | 10 | "$schedule" --micro-batches 1.5
schedule --micro-batches 2000000000  | --micro-batches must be between 1 and 1000000, got 2000000000$             | 10 | "$schedule" --micro-batches 2000000000
schedule --micro-batches overflow    | --micro-batches must be between 1 and 1000000, got 99999999999999999999999 | 10 | "$schedule" --micro-batches 99999999999999999999999
schedule --virtual-stages -1         | --virtual-stages must be between 1 and 10000, got -1                       | 10 | "$schedule" --schedule interleaved --virtual-stages -1
schedule --send inf                  | ^error: --send must be a finite number, got inf$                           | 10 | "$schedule" --send inf
schedule --forward nan               | ^error: --forward must be a finite number, got nan$                        | 10 | "$schedule" --forward nan
schedule --backward-weight 1e400     | --backward-weight must be between 0 and 1000000000, got 1e400                   | 10 | "$schedule" --backward-weight 1e400
schedule: memory of the schedule     | --micro-batches 1000000 with --ranks 1024 .*needs .*, more than the .* of this machine | 10 | "$schedule" --ranks 1024 --micro-batches 1000000 --save "$out/s.json"

# strata-accel: flags
accel gemm --m abc                   | ^error: --m: 'abc' is not a number$                                        | 10 | "$accel" gemm --m abc --k 8 --n 8
accel gemm --m 0                     | ^error: --m must be between 1 and 1000000000000000, got 0$                 | 10 | "$accel" gemm --m 0 --k 8 --n 8
accel gemm --k overflow              | --k must be between 1 and 1000000000000000, got 99999999999999999999999    | 10 | "$accel" gemm --m 8 --k 99999999999999999999999 --n 8
accel conv --padding -1              | --padding must be between 0 and                                            | 10 | "$accel" conv --in-channels 1 --out-channels 1 --height 8 --width 8 --kernel 3 --padding -1
accel attention --heads 2.5          | --heads: '2.5' is not a whole number                                       | 10 | "$accel" attention --heads 2.5 --seq-q 8 --head-dim 8
accel --bandwidth nan                | ^error: --bandwidth must be a finite number, got nan$                      | 10 | "$accel" gemm --bandwidth nan --m 8 --k 8 --n 8
accel --bandwidth inf                | ^error: --bandwidth must be a finite number, got inf$                      | 10 | "$accel" gemm --bandwidth inf --m 8 --k 8 --n 8
accel --bandwidth 0                  | --bandwidth must be greater than 0 and at most 1000000000, got 0                | 10 | "$accel" gemm --bandwidth 0 --m 8 --k 8 --n 8
accel --array 100000x8               | --array 100000x8: R and C must be between 1 and 65536                      | 10 | "$accel" gemm --array 100000x8 --m 8 --k 8 --n 8
accel --array overflow               | --array 99999999999999999999x8: R and C must be between 1 and 65536        | 10 | "$accel" gemm --array 99999999999999999999x8 --m 8 --k 8 --n 8
accel model --train-steps 1e12       | --train-steps must be between 0 and 10000, got 1000000000000               | 10 | "$accel" model --train-steps 1000000000000
accel model --seq inf                | --seq: 'inf' is not a whole number                                         | 10 | "$accel" model --model fortunes-lm --seq inf

# strata-accel: memory, overflow, spec fields
accel model: cnn batch memory        | --model fmnist-cnn with --batch 1000000 needs .*, more than the .* of this machine    | 10 | "$accel" model --batch 1000000
accel model: lm memory               | --model fortunes-lm with --batch 100000 and --seq 100000 needs .*, more than the       | 10 | "$accel" model --model fortunes-lm --batch 100000 --seq 100000
accel gemm: cycles overflow          | ^error: gemm (gemm): its cost overflows: 4000000000000 x 4000000000000 does not fit    | 10 | "$accel" gemm --m 4000000000000 --k 4000000000000 --n 4000000000000
accel gemm --batch: overflow         | gemm (gemm): its cost overflows: .* does not fit in a 64-bit integer                  | 10 | "$accel" gemm --m 1000000 --k 1000000 --n 1000000 --batch 1000000000000000
accel conv: overflow                 | conv (conv): its cost overflows                                                       | 10 | "$accel" conv --batch 1000000000000000 --in-channels 1000000000 --out-channels 8 --height 1000000 --width 1000000 --kernel 1
accel attention: overflow            | attention (attention): its cost overflows                                             | 10 | "$accel" attention --preset fusemax --seq-q 100000000000000 --head-dim 100000000000000
accel eyeriss conv: overflow         | conv (conv): its cost overflows                                                       | 10 | "$accel" conv --preset eyeriss --batch 1000000000000000 --in-channels 1000000000 --out-channels 8 --height 1000 --width 1000 --kernel 1
accel pim gemm: overflow             | gemm (gemm): its cost overflows                                                       | 10 | "$accel" gemm --preset pim-gpt --m 1000000000000000 --k 1000000000000000 --n 8
accel spec rows 2^63-1               | rows.json: field 'rows': got 9223372036854775807, expected an integer between 1 and 65536 | 10 | "$accel" gemm --spec "$in/rows.json" --m 8 --k 8 --n 8
accel spec cols                      | cols.json: field 'cols': got 100000, expected an integer between 1 and 65536          | 10 | "$accel" gemm --spec "$in/cols.json" --m 8 --k 8 --n 8
accel spec clock_mhz                 | clock.json: field 'clock_mhz': got 1e+300, expected a number greater than 0 and at most | 10 | "$accel" gemm --spec "$in/clock.json" --m 8 --k 8 --n 8
accel spec word_bytes                | word.json: field 'word_bytes': got 4096                                              | 10 | "$accel" gemm --spec "$in/word.json" --m 8 --k 8 --n 8
accel spec sram_kib                  | sram.json: field 'sram_kib.ifmap': got 1e+30                                         | 10 | "$accel" gemm --spec "$in/sram.json" --m 8 --k 8 --n 8
accel spec energy                    | energy.json: field 'energy_pj.mac': got 1e+300                                       | 10 | "$accel" gemm --spec "$in/energy.json" --m 8 --k 8 --n 8
accel spec pim banks                 | banks.json: field 'pim.banks': got 4611686018427387904, expected an integer between 1 and | 10 | "$accel" gemm --spec "$in/banks.json" --m 8 --k 8 --n 8
accel model: spec rows               | rows.json: field 'rows'                                                              | 10 | "$accel" model --spec "$in/rows.json"

# strata-run
run --timeout nan                    | ^error: --timeout must be a finite number, got nan$                        | 10 | "$run" --timeout nan -n 1 true
run --grace inf                      | ^error: --grace must be a finite number, got inf$                          | 10 | "$run" --grace inf -n 1 true
run -n 0                             | ^error: --nproc must be between 1 and 1024, got 0$                         | 10 | "$run" -n 0 true
run -n abc                           | ^error: --nproc: 'abc' is not a number$                                    | 10 | "$run" -n abc true
run --port 70000                     | --port must be between 0 and 65535, got 70000                              | 10 | "$run" --port 70000 -n 1 true

# strata-extract
extract --budget-params nan          | ^error: --budget-params must be a finite number, got nan$                  | 10 | "$extract" --checkpoint "$in/moe" --budget-params nan --out "$out/x"
extract --budget-params -5           | --budget-params must be greater than 0                                     | 10 | "$extract" --checkpoint "$in/moe" --budget-params -5 --out "$out/x"
extract --granularity overflow       | --granularity must be between 1 and 1000000, got 99999999999999999999      | 10 | "$extract" --checkpoint "$in/moe" --granularity 99999999999999999999 --out "$out/x"
extract --search abc                 | --search: 'abc' is not a number                                            | 10 | "$extract" --checkpoint "$in/moe" --budget-params 100 --search abc --out "$out/x"
extract --skip -1                    | --skip must be between 0 and 10000, got -1                                 | 10 | "$extract" --checkpoint "$in/moe" --granularity 8 --skip 0,-1 --out "$out/x"

# strata-qmoe
qmoe compress --calibration 1e9      | --calibration 1000000000 Gaussian tokens per expert of width 256 needs .*, more than the | 10 | "$qmoe" compress --checkpoint "$in/moe" --calibration 1000000000 --out "$out/x.qmoe"
qmoe compress --calibration 1e10     | --calibration must be between 1 and 1000000000, got 10000000000            | 10 | "$qmoe" compress --checkpoint "$in/moe" --calibration 10000000000 --out "$out/x.qmoe"
qmoe compress --damp nan             | ^error: --damp must be a finite number, got nan$                           | 10 | "$qmoe" compress --checkpoint "$in/moe" --calibration 8 --damp nan --out "$out/x.qmoe"
qmoe compress --seed -1              | --seed must be between 0 and 9223372036854775807, got -1                   | 10 | "$qmoe" compress --checkpoint "$in/moe" --calibration 8 --seed -1 --out "$out/x.qmoe"
qmoe synth --d overflow              | --d must be between 1 and 1000000, got 99999999999999999999999             | 10 | "$qmoe" synth --out "$out/s" --d 99999999999999999999999
qmoe synth: memory                   | synth: --layers 10000 of --experts 10000 x --d 256 x --hidden 512 needs .*, more than the | 10 | "$qmoe" synth --out "$out/s" --layers 10000 --experts 10000
qmoe eval --batches abc              | --batches: 'abc' is not a number                                           | 10 | "$qmoe" eval --checkpoint "$in/moe" --compressed "$in/x.qmoe" --batches abc

# strata-quant (NaN and infinity are values HLS casts: saturated or wrapped, tested in
# test_strata_quant.sh)
quant cast --values 1e999             | value '1e999': out of double range                                        | 10 | "$quant" cast --type 'ap_fixed<8,3>' --values 1,1e999
quant type: width too large          | too large                                                                  | 10 | "$quant" type --type 'ap_fixed<99999999999,3>'

# train_fmnist
train_fmnist --threads 100000        | ^error: --threads $threads_range 100000$                                   | 10 | "$train_fmnist" --threads 100000
train_fmnist --batch 0               | ^error: --batch must be between 1 and 60000, got 0$                        | 10 | "$train_fmnist" --batch 0
train_fmnist --lr nan                | ^error: --lr must be a finite number, got nan$                             | 10 | "$train_fmnist" --lr nan
train_fmnist --lr inf                | ^error: --lr must be a finite number, got inf$                             | 10 | "$train_fmnist" --lr inf
train_fmnist --epochs abc            | ^error: --epochs: 'abc' is not a number$                                   | 10 | "$train_fmnist" --epochs abc
train_fmnist --epochs 3000000000     | --epochs must be between 1 and 100000, got 3000000000                      | 10 | "$train_fmnist" --epochs 3000000000
train_fmnist --max-steps overflow    | --max-steps must be between 0 and 1000000000, got 99999999999999999999999  | 10 | "$train_fmnist" --max-steps 99999999999999999999999
train_fmnist --timeout nan           | ^error: --timeout must be a finite number, got nan$                        | 10 | "$train_fmnist" --timeout nan
train_fmnist --micro-batches 2e9     | --micro-batches must be between 1 and 1000000, got 2000000000              | 10 | "$train_fmnist" --pp 2 --micro-batches 2000000000
train_fmnist --pp 100000             | --pp must be between 1 and 1024, got 100000                                | 10 | "$train_fmnist" --pp 100000
train_fmnist --bucket-cap-mb inf     | --bucket-cap-mb must be a finite number, got inf                           | 10 | "$train_fmnist" --bucket-cap-mb inf
train_fmnist --seed -1               | --seed must be between 0 and 9223372036854775807, got -1                   | 10 | "$train_fmnist" --seed -1
train_fmnist --momentum 1.5          | --momentum must be between 0 and 1, got 1.5                                | 10 | "$train_fmnist" --momentum 1.5
train_fmnist --checkpoint-every -1   | --checkpoint-every must be between 0 and 1000000000, got -1                | 10 | "$train_fmnist" --checkpoint-every -1 --checkpoint-dir "$out/ckpt"
train_fmnist STRATA_TIMEOUT=nan      | STRATA_TIMEOUT: got .nan., expected a number of seconds between 0 and      | 10 | env STRATA_TIMEOUT=nan "$train_fmnist"

# train_lm
train_lm --steps overflow            | ^error: --steps must be between 0 and 1000000000, got 99999999999999999999999$ | 10 | "$train_lm" --steps 99999999999999999999999
train_lm --steps abc                 | ^error: --steps: 'abc' is not a number$                                    | 10 | "$train_lm" --steps abc
train_lm --lr nan                    | ^error: --lr must be a finite number, got nan$                             | 10 | "$train_lm" --lr nan
train_lm --lr 0                      | ^error: --lr must be greater than 0 and at most 1000, got 0$               | 10 | "$train_lm" --lr 0
train_lm --temperature inf           | --temperature must be a finite number, got inf                             | 10 | "$train_lm" --temperature inf
train_lm --threads 0                 | --threads $threads_range 0                                                 | 10 | "$train_lm" --threads 0
train_lm --granularities 0           | --granularities must be between 1 and 1000000, got 0                       | 10 | "$train_lm" --matformer --granularities 1024,0
train_lm --capacity-factor nan       | --capacity-factor must be a finite number, got nan                         | 10 | "$train_lm" --moe --capacity-factor nan
train_lm --experts 2^40              | --experts must be between 1 and 10000, got 1099511627776                   | 10 | "$train_lm" --moe --experts 1099511627776
train_lm --dropout 1                 | --dropout must be between 0 and 0.99, got 1                                | 10 | "$train_lm" --dropout 1
train_lm: memory                     | --batch 100000 x --context 128 with --layers 4, --d-model 4096, --ffn 1024 needs .*, more than the | 10 | "$train_lm" --batch 100000 --d-model 4096

# qfx_fmnist
qfx --bits 99                        | --bits must be between 1 and 24, got 99                                    | 10 | "$qfx" --bits 4,99 --out "$out/q.jsonl"
qfx --percentile nan                 | --percentile must be a finite number, got nan                              | 10 | "$qfx" --percentile nan --out "$out/q.jsonl"
qfx --qfx-lr inf                     | --qfx-lr must be a finite number, got inf                                  | 10 | "$qfx" --qfx-lr inf --out "$out/q.jsonl"
qfx --batch abc                      | --batch: 'abc' is not a number                                             | 10 | "$qfx" --batch abc --out "$out/q.jsonl"
qfx --threads 100000                 | --threads $threads_range 100000                                            | 10 | "$qfx" --threads 100000 --out "$out/q.jsonl"
qfx --qfx-steps overflow             | --qfx-steps must be between 1 and 1000000000, got 99999999999999999999999  | 10 | "$qfx" --qfx-steps 99999999999999999999999 --out "$out/q.jsonl"

# sparse_fmnist
sparse --sparsity nan                | --sparsity must be a finite number, got nan                                | 10 | "$sparse" --mode prune --sparsity nan
sparse --lr 0                        | --lr must be greater than 0 and at most 1000, got 0                        | 10 | "$sparse" --lr 0
sparse --test-samples 10001          | --test-samples must be between 1 and 10000, got 10001                      | 10 | "$sparse" --test-samples 10001
sparse --max-steps 1e30              | --max-steps must be between 0 and 1000000000, got 1e30                     | 10 | "$sparse" --max-steps 1e30
sparse --threads 100000              | --threads $threads_range 100000                                            | 10 | "$sparse" --threads 100000
sparse --log-every abc               | --log-every: 'abc' is not a number                                         | 10 | "$sparse" --log-every abc

# accel_codesign
codesign --bandwidth nan             | --bandwidth must be a finite number, got nan                               | 10 | "$codesign" --utilization-study --bandwidth nan
codesign --arrays 0                  | --arrays must be between 1 and 65536, got 0                                | 10 | "$codesign" --arrays 8 0
codesign --sram-kib inf              | --sram-kib must be a finite number, got inf                                | 10 | "$codesign" --sram-kib inf
codesign --latency-ms -1             | --latency-ms must be greater than 0                                        | 10 | "$codesign" --latency-ms -1
codesign --steps overflow            | --steps must be between 1 and 1000000000, got 99999999999999999999999      | 10 | "$codesign" --steps 99999999999999999999999
codesign --threads 100000            | --threads $threads_range 100000                                            | 10 | "$codesign" --threads 100000
codesign --lr nan                    | --lr must be a finite number, got nan                                      | 10 | "$codesign" --lr nan --json-out "$out/c.jsonl"
TABLE
