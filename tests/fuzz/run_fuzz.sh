#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time:
#   run_fuzz.sh <target> <seed corpus> <work dir> <seconds> [more libFuzzer options]
# New inputs go to <work dir>/corpus (the committed seed corpus is only read); a failing input
# is saved as <work dir>/crash-* (or leak-*, timeout-*, oom-*) and fails the run.
set -euo pipefail
target=$1 seeds=$2 work=$3 seconds=$4
shift 4
mkdir -p "$work/corpus"
exec "$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
