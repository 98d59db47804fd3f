# The training essentials (docs/zero.md, issue 18): --clip-grad-norm, --accumulate, the
# learning-rate schedule and train_lm's --zero, out of range or in combinations not
# supported, refused with one line before any work.
bad_input_table <<'TABLE'
train_fmnist --clip-grad-norm -1      | ^error: --clip-grad-norm must be between 0 and 1000000, got -1$ | 10 | "$train_fmnist" --threads 1 --clip-grad-norm -1
train_lm --clip-grad-norm nan         | ^error: --clip-grad-norm                                  | 10 | "$train_lm" --threads 1 --clip-grad-norm nan
train_fmnist --accumulate 0           | ^error: --accumulate must be between 1 and 1000000, got 0$ | 10 | "$train_fmnist" --threads 1 --accumulate 0
train_lm --accumulate 0               | ^error: --accumulate must be between 1 and 1000000, got 0$ | 10 | "$train_lm" --threads 1 --accumulate 0
train_lm --accumulate 1.5             | ^error: --accumulate: '1.5' is not a whole number$        | 10 | "$train_lm" --threads 1 --accumulate 1.5
train_lm --warmup-steps -3            | ^error: --warmup-steps must be between 0 and              | 10 | "$train_lm" --threads 1 --warmup-steps -3
train_lm --lr-schedule linear         | ^error: --lr-schedule: linear not in                      | 10 | "$train_lm" --threads 1 --lr-schedule linear
train_fmnist --lr-floor 2             | ^error: --lr-floor must be between 0 and 1, got 2$        | 10 | "$train_fmnist" --threads 1 --lr-floor 2
train_lm --zero 4                     | ^error: --zero must be between 0 and 3, got 4$            | 10 | "$train_lm" --threads 1 --zero 4
train_lm --zero 1 --pp 2              | ^error: --zero 1 with --pp 2 is not supported yet         | 10 | "$train_lm" --threads 1 --zero 1 --pp 2 --metrics-out "$out/m.jsonl"
train_lm --zero 1 --grad-reduce bf16  | ^error: --grad-reduce-dtype bf16 with --zero 1 is not supported | 20 | "$train_lm" --threads 1 --steps 2 --layers 1 --d-model 32 --ffn 32 --zero 1 --grad-reduce-dtype bf16 --metrics-out "$out/m.jsonl"
train_fmnist --accumulate adaptive pp | ^error: --balance adaptive with --clip-grad-norm or --accumulate is not supported | 30 | "$train_fmnist" --threads 1 --model mlp --max-steps 2 --pp 2 --balance adaptive --accumulate 2 --metrics-out "$out/m.jsonl"
TABLE
