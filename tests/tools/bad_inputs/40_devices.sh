# --devices (issue 17): an entry that is no device, an unknown preset or unreadable spec, a
# CUDA device in a build without CUDA, more or fewer devices than stages, the flag without
# a pipeline, and a stage larger than its simulated device's memory (memory_mib): one line
# naming the entry.
printf '{"preset": "nvdla", "name": "tiny-nvdla", "memory_mib": 0.01}' >"$in/tiny_nvdla.json"
printf '{"preset": "nvdla", "memory_mib": -1}' >"$in/negative_memory.json"
bad_input_table <<'TABLE'
train_fmnist --devices unknown device      | entry 2 'gpu' is not a device, expected cpu, accel:       | 20 | "$train_fmnist" --threads 1 --pp 2 --devices cpu,gpu --metrics-out "$out/m.jsonl"
train_fmnist --devices unknown preset      | entry 2 'accel:nosuch': .*nvdla                           | 20 | "$train_fmnist" --threads 1 --pp 2 --devices accel:nvdla,accel:nosuch --metrics-out "$out/m.jsonl"
train_fmnist --devices garbage spec file   | entry 1 'accel:.*garbage.json'                            | 20 | "$train_fmnist" --threads 1 --pp 2 --devices "accel:$in/garbage.json" --metrics-out "$out/m.jsonl"
train_fmnist --devices empty entry         | entry 2 is empty                                          | 20 | "$train_fmnist" --threads 1 --pp 2 --devices cpu, --metrics-out "$out/m.jsonl"
train_fmnist --devices more than stages    | has 3 entries for --pp 2, expected 2 .one per stage. or 1 | 20 | "$train_fmnist" --threads 1 --pp 2 --devices cpu,cpu,cpu --metrics-out "$out/m.jsonl"
train_fmnist --devices fewer than stages   | has 2 entries for --pp 4, expected 4                      | 20 | "$train_fmnist" --threads 1 --pp 4 --devices cpu,accel:nvdla --metrics-out "$out/m.jsonl"
train_fmnist --devices cuda, CPU build     | entry 2 'cuda:0': this build has no CUDA                  | 20 | "$train_fmnist" --threads 1 --pp 2 --devices cpu,cuda:0 --metrics-out "$out/m.jsonl"
train_fmnist --devices without --pp        | --devices needs --pp 2 or more                            | 20 | "$train_fmnist" --threads 1 --devices cpu --metrics-out "$out/m.jsonl"
train_lm --devices unknown device          | entry 1 'tpu:0' is not a device                           | 20 | "$train_lm" --threads 1 --pp 2 --devices tpu:0 --metrics-out "$out/m.jsonl"
train_fmnist stage over device memory     | entry 'accel:.*tiny_nvdla.json': stage 0 .layers 0-[0-9]*. needs [0-9]* bytes .*the device has 10485 .memory_mib 0.01 | 60 | "$train_fmnist" --threads 1 --pp 2 --devices "accel:$in/tiny_nvdla.json,accel:shidiannao" --max-steps 1 --metrics-out "$out/m.jsonl"
train_fmnist mpirun stage over memory      | entry 'accel:.*tiny_nvdla.json': stage 0 .*the device has 10485 | 60 | "${mpi2[@]}" "$train_fmnist" --threads 1 --pp 2 --devices "accel:$in/tiny_nvdla.json" --max-steps 1 --metrics-out "$out/m.jsonl"
train_fmnist spec memory_mib negative      | field 'memory_mib': got -1, expected a number between 0 .unlimited. | 20 | "$train_fmnist" --threads 1 --pp 2 --devices "accel:$in/negative_memory.json" --metrics-out "$out/m.jsonl"
TABLE
