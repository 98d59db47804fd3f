# Inputs that are missing, directories or not what they claim: one line naming the path.
echo "not json" >"$in/garbage.json"
mkdir -p "$in/a-directory"
bad_input_table <<'TABLE'
schedule --load a missing file    | missing.json: no such file       | 10 | "$schedule" --load "$in/missing.json"
schedule --load garbage           | garbage.json                    | 10 | "$schedule" --load "$in/garbage.json"
accel --spec a missing file       | missing.json                    | 10 | "$accel" gemm --spec "$in/missing.json" --m 8 --k 8 --n 8
train_fmnist --data-dir missing   | missing                         | 20 | "$train_fmnist" --threads 1 --data-dir "$in/missing" --metrics-out "$out/m.jsonl"
TABLE
