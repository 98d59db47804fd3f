#!/usr/bin/env bash
# Formats strata's C++ sources with .clang-format (Debian's clang-format-14).
#   scripts/format.sh            formats every tracked .h/.cpp/.cu in place
#   scripts/format.sh --check    changes nothing; lists the files it would change, exits 1 if any
set -euo pipefail
cd "$(dirname "$0")/.."
clang_format="${CLANG_FORMAT:-clang-format-14}"
command -v "$clang_format" >/dev/null || { echo "format: $clang_format not found (scripts/setup.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu')
if [[ "${1:-}" == "--check" ]]; then
  unformatted=()
  for f in "${files[@]}"; do
    "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
  done
  if ((${#unformatted[@]})); then
    echo "format: ${#unformatted[@]} file(s) not formatted (run scripts/format.sh): ${unformatted[*]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files formatted"
else
  "$clang_format" -i "${files[@]}"
fi
