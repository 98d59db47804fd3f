# Sharded data parallelism (--zero, docs/zero.md): stages that do not exist and what is not
# supported yet, refused with one line before any work (issue 18).
bad_input_table <<'TABLE'
train_fmnist --zero 5                 | ^error: --zero must be between 0 and 3, got 5$            | 10 | "$train_fmnist" --threads 1 --zero 5
train_fmnist --zero -1                | ^error: --zero must be between 0 and 3, got -1$           | 10 | "$train_fmnist" --threads 1 --zero -1
train_fmnist --zero 3 --pp 2          | ^error: --zero 3 with --pp 2 is not supported yet         | 10 | "$train_fmnist" --threads 1 --zero 3 --pp 2 --metrics-out "$out/m.jsonl"
TABLE
