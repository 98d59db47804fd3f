# train_lm --variable-length (issue 17, several tensors between stages): it trains the dense
# fortunes-lm only, and the measured splits (--balance time, memory, auto, adaptive) are not
# tested with layers that pass {hidden, mask}: one line naming the flag and what to use.
bad_input_table <<'TABLE'
train_lm --variable-length with --moe        | --variable-length trains the dense fortunes-lm; it does not combine with --moe          | 20 | "$train_lm" --threads 1 --variable-length --moe --steps 1 --metrics-out "$out/m.jsonl"
train_lm --variable-length with --matformer  | --variable-length trains the dense fortunes-lm; it does not combine with --matformer    | 20 | "$train_lm" --threads 1 --variable-length --matformer --steps 1 --metrics-out "$out/m.jsonl"
train_lm --variable-length --balance time    | --variable-length with --balance time: the measured splits are not tested yet.*use --balance params or layer counts such as 5,4 | 20 | "$train_lm" --threads 1 --variable-length --pp 2 --balance time --steps 1 --metrics-out "$out/m.jsonl"
TABLE
