# --balance adaptive (issue 17): without a pipeline, with several stages per rank, with tied
# weights, in one process and under mpirun: one line naming what it cannot move.
bad_input_table <<'TABLE'
train_fmnist --balance adaptive, --pp 1   | --balance needs --pp 2 or more                                  | 20 | "$train_fmnist" --threads 1 --balance adaptive --metrics-out "$out/m.jsonl"
train_fmnist adaptive, virtual stages     | balance adaptive with 2 virtual stages per rank, expected 1      | 30 | "$train_fmnist" --threads 1 --pp 2 --devices cpu,cpu --schedule interleaved --virtual-stages 2 --balance adaptive --metrics-out "$out/m.jsonl"
train_fmnist adaptive, virtual stages, mpi | balance adaptive with 2 virtual stages per rank, expected 1     | 60 | "${mpi2[@]}" "$train_fmnist" --threads 1 --pp 2 --schedule interleaved --virtual-stages 2 --balance adaptive --metrics-out "$out/m.jsonl"
train_lm --balance adaptive, tied weights | balance adaptive with tied parameters .*expected none            | 60 | "$train_lm" --threads 1 --pp 2 --devices cpu,cpu --balance adaptive --steps 2 --metrics-out "$out/m.jsonl"
TABLE
