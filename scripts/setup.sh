#!/usr/bin/env bash
# Installs every Debian package strata needs. Idempotent and quiet: it only calls
# apt-get (and `apt-get update`, once) when something is missing.
set -euo pipefail

packages=(
  cmake g++ make ccache pkg-config clang-format-14
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libboost-dev libgloo-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev nlohmann-json3-dev libxxhash-dev zlib1g-dev
  coinor-libcbc-dev
  clang libclang-rt-14-dev
  python3-torch python3-matplotlib
  dataset-fashion-mnist fortunes
  bible-kjv-text bible-kjv
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  log=$(mktemp)
  # Quiet when it works; the whole apt log when it does not.
  if ! { $sudo_cmd apt-get update -qq && \
         $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: apt-get failed" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

# train_lm --corpus bible reads the King James Bible as plain text, one file per book.
bash "$(dirname "$0")/bible_corpus.sh"
