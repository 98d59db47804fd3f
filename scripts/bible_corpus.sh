#!/usr/bin/env bash
# Writes the King James Bible of Debian's bible-kjv-text (compressed in /usr/lib/bible.data,
# read with bible-kjv's `bible` program) as plain text, one file per book in canonical
# order (01-genesis.txt .. 66-revelation.txt), for `train_lm --corpus bible` (issue 21).
# TextCorpus splits by file: the last books (about a tenth of the bytes) are validation.
#   scripts/bible_corpus.sh [DIR]     # default /usr/local/share/strata/bible-kjv
set -euo pipefail
dir="${1:-/usr/local/share/strata/bible-kjv}"
[[ -f $dir/66-revelation.txt ]] && exit 0
command -v bible >/dev/null || { echo "bible_corpus: no 'bible' program (install bible-kjv)" >&2; exit 1; }
sudo_cmd=""
[[ $(id -u) -eq 0 || -w $(dirname "$dir") ]] || sudo_cmd="sudo"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -l0: one verse a line. A line that does not start with a space is a chapter heading
# ("Song of Solomon 3"); chapter 1's starts the next book.
(cd "$tmp" && bible -l0 gen1:1-rev22:21 | awk '
  /^[^ ]/ && / 1$/ { book++; name = tolower(substr($0, 1, length($0) - 2)); gsub(/ /, "-", name)
                     file = sprintf("%02d-%s.txt", book, name) }
  file != "" { print > file }')
[[ $(ls "$tmp" | wc -l) -eq 66 ]] || { echo "bible_corpus: expected 66 books, got $(ls "$tmp" | wc -l)" >&2; exit 1; }
$sudo_cmd mkdir -p "$dir"
$sudo_cmd cp "$tmp"/*.txt "$dir"/
