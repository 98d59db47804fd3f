# sparse_fmnist's N:M training flags (issue 22): the range of --mask-every and
# --dense-grad-every, and their use outside N:M training. Each is one line naming the flag.

bad_input_table <<'TABLE'
sparse --mask-every 0              | --mask-every must be between 1 and 1000000000, got 0        | 10 | "$sparse" --mode bdwp --mask-every 0
sparse --dense-grad-every -1       | --dense-grad-every must be between 0 and 1000000000, got -1 | 10 | "$sparse" --mode srste --dense-grad-every -1
sparse --mask-every in dense mode  | --mask-every 5 and --dense-grad-every 1: only N:M training .--mode srste or bdwp. uses them, not --mode dense | 10 | "$sparse" --mode dense --mask-every 5
TABLE
