#!/usr/bin/env bash
# ABI of libkd.so.1 against the committed libabigail baseline.
#   check_abi.sh check  <libkd.so.1> <baseline.abi> <include dir>: fails on any reported change
#                        (functions added to the library are allowed: --no-added-syms)
#   check_abi.sh update <libkd.so.1> <baseline.abi> <include dir>: rewrites the baseline
# Only types reachable from the public headers are compared (--headers-dir), and only those
# the public headers define: the layout of an opaque handle (struct kd_model, defined in lib/)
# is private (abidiff --headers-dir1/--headers-dir2).
set -euo pipefail
mode=$1 lib=$2 baseline=$3 include=$4

case $mode in
  update)
    abidw --headers-dir "$include" --no-corpus-path --out-file "$baseline" "$lib"
    echo "wrote $baseline"
    ;;
  check)
    current=$(mktemp --suffix=.abi)
    trap 'rm -f "$current"' EXIT
    abidw --headers-dir "$include" --no-corpus-path --out-file "$current" "$lib"
    if abidiff --no-added-syms --headers-dir1 "$include" --headers-dir2 "$include" \
         "$baseline" "$current"; then
      echo "ABI of $(basename "$lib") matches $baseline"
    else
      echo "ABI change against $baseline (abidiff exit $?): see docs/abi.md" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 check|update <lib> <baseline> <include dir>" >&2
    exit 2
    ;;
esac
