#!/usr/bin/env bash
# Bad input at the edges (issue 23), one table per class in bad_inputs/*.sh, every program:
# each row must exit non-zero within its time limit with exactly one stderr line matching
# its pattern, leave nothing in $out (the folder every output flag of a row points into),
# and leave the inputs under $in byte for byte as they were.
#
# Arguments: NAME=PATH for each program (qmoe, extract, schedule, accel, run, quant,
# train_fmnist, train_lm, qfx, sparse, codesign) and specs=DIR (accel/specs).
set -uo pipefail
for arg in "$@"; do declare "${arg%%=*}=${arg#*=}"; done
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../cli_test_lib.sh"
data=/usr/share/datasets/fashion-mnist
in="$tmp/in" out="$tmp/out"
mkdir -p "$in" "$out"
# Open MPI's own banners ("Primary job terminated normally, ...") would break the
# one-line rule; strata's line is what a person reads.
mpi2=(mpirun --quiet --oversubscribe -np 2)

# digest PATH: one hash of a file, or of every file under a directory with its name.
digest() { (cd "$1" 2>/dev/null && find . -type f -print0 | sort -z | xargs -0 sha256sum || sha256sum <"$1") | sha256sum; }

trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf %s "${s%"${s##*[![:space:]]}"}"; }

# bad_input_table: reads rows "NAME | PATTERN | SECONDS | COMMAND" from stdin (blank lines
# and lines starting with # are skipped; PATTERN and COMMAND are expanded by the shell, so
# $in, $out, $data, program variables and arrays work). A row passes when COMMAND fails
# with one stderr line matching PATTERN (and not "error: error:") within SECONDS, $out is
# left empty and $in unchanged.
bad_input_table() {
  local name pattern seconds command words before start elapsed
  while IFS='|' read -r -u 3 name pattern seconds command; do
    name=$(trim "$name") pattern=$(trim "$pattern") seconds=$(trim "$seconds")
    [[ -z $name || $name == \#* ]] && continue
    eval "pattern=\"$pattern\"; words=($command)"
    rm -rf "$out"; mkdir -p "$out"
    before=$(digest "$in")
    start=$(date +%s.%N)
    fails_with_one_line "$name" "$pattern" timeout -k 5 "$((seconds + 30))" "${words[@]}" || continue
    elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    if grep -q "error: error:" "$tmp/stderr"; then fail "$name: doubled prefix: $(cat "$tmp/stderr")"; continue; fi
    if awk -v e="$elapsed" -v s="$seconds" 'BEGIN { exit !(e > s) }'; then
      fail "$name: took ${elapsed} s, limit $seconds s"; continue
    fi
    if [[ -n $(ls -A "$out") ]]; then fail "$name: left $(ls -A "$out" | tr '\n' ' ')"; continue; fi
    if [[ $(digest "$in") != "$before" ]]; then fail "$name: an input under $in changed"; continue; fi
    pass "$name (${elapsed} s): $(cat "$tmp/stderr")"
  # Commands read /dev/null: mpirun forwards its stdin to rank 0, and would eat the table.
  done 3<&0 </dev/null
}

# BAD_INPUT_TABLES=10_multirank (a glob) runs only the matching tables, while working on one.
for part in "$here"/bad_inputs/${BAD_INPUT_TABLES:-*}.sh; do
  echo "== $(basename "$part")"
  source "$part"
done
finish
