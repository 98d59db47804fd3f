# Languini (issue 21): an unknown architecture or corpus, a corpus that is not installed, a
# compute budget too small for one step, a budget with --resume, and the flags that only a
# Transformer has with --arch lstm: one line naming the flag, the value and what is allowed.
bad_input_table <<'TABLE'
train_lm --arch unknown                 | --arch: gru not in .transformer,lstm.                    | 20 | "$train_lm" --threads 1 --arch gru --metrics-out "$out/m.jsonl"
train_lm --corpus unknown               | --corpus: shakespeare not in .fortunes,bible.            | 20 | "$train_lm" --threads 1 --corpus shakespeare --metrics-out "$out/m.jsonl"
train_lm --corpus with --data-dir       | --corpus excludes --data-dir                             | 20 | "$train_lm" --threads 1 --corpus bible --data-dir "$in" --metrics-out "$out/m.jsonl"
train_lm --compute-budget zero          | --compute-budget must be greater than 0 and at most 1000000000, got 0 | 20 | "$train_lm" --threads 1 --compute-budget 0 --metrics-out "$out/m.jsonl"
train_lm --compute-budget under a step  | --compute-budget 1e-06 s is less than one training step .batch 8 x context 32., which took .* s; expected at least that | 30 | "$train_lm" --threads 1 --batch 8 --context 32 --compute-budget 0.000001
train_lm mpirun budget under a step     | --compute-budget 1e-06 s is less than one training step  | 40 | "${mpi2[@]}" "$train_lm" --threads 1 --batch 8 --context 32 --compute-budget 0.000001
train_lm --compute-budget with --resume | --compute-budget 5 s measures one uninterrupted run; it does not combine with --resume | 20 | "$train_lm" --threads 1 --compute-budget 5 --resume "$in/nothing" --metrics-out "$out/m.jsonl"
train_lm --arch lstm --pp               | --arch lstm trains data-parallel only; --pp 2 pipelines  | 20 | "$train_lm" --threads 1 --arch lstm --pp 2 --metrics-out "$out/m.jsonl"
train_lm --arch lstm --matformer        | --arch lstm has no nested FFNs; drop --matformer         | 20 | "$train_lm" --threads 1 --arch lstm --matformer --metrics-out "$out/m.jsonl"
train_lm --arch lstm --moe              | --arch lstm has no experts; drop --moe                   | 20 | "$train_lm" --threads 1 --arch lstm --moe --metrics-out "$out/m.jsonl"
TABLE
