#!/usr/bin/env bash
# Where a libkd training epoch spends its time: perf record of the timed kd_trainer_step loop
# of bench_train_epoch only (not the data generation, the model set-up or the sgemm replay),
# then the share of each function and source line, for the main thread (whose time is the
# epoch's wall time: it runs the library's loops and waits in OpenBLAS while the BLAS threads
# work) and for all threads. Not part of ctest.
#
#   tests/benchmarks/perf_train_epoch.sh [NETWORK [THREADS]]    (default teacher-dropout 2)
#
# NETWORK: teacher-dropout, teacher or student. Environment: BATCHES (default 200),
# OPENBLAS_CORETYPE (passed through), TOP (lines shown, default 25). Needs perf and a release
# build (tests/benchmarks/run_train_epoch.sh builds one); perf_event_paranoid <= 2 suffices.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
net=${1:-teacher-dropout}
threads=${2:-2}
batches=${BATCHES:-200}
top=${TOP:-25}
bench=$root/build/release/tests/benchmarks/bench_train_epoch
command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 2; }
[[ -x $bench ]] || { echo "build first: cmake --preset release && cmake --build --preset release" >&2; exit 2; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/ctl" "$dir/ack"
exec {ctl}<>"$dir/ctl" {ack}<>"$dir/ack"

OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
  KD_BENCH_PERF_CTL_FD=$ctl KD_BENCH_PERF_ACK_FD=$ack \
  perf record -q -D -1 --control "fd:$ctl,$ack" -o "$dir/perf.data" -- \
  "$bench" --net "$net" --batches "$batches" --sgemm-reps 0 | grep -E "BLAS|epoch"

# The main thread is the process's first thread: the smallest thread id ("pid" in perf's sort
# keys is the thread id).
main_tid=$(perf report -i "$dir/perf.data" --stdio --sort pid 2>/dev/null \
  | awk '/bench_train_epo/ { split($2, a, ":"); print a[1] }' | sort -n | head -1)

report() {
  perf report -i "$dir/perf.data" --stdio --no-children --percent-limit 0.3 \
    --sort dso,sym,srcline "$@" 2>/dev/null | grep -v '^#' | grep '%' | head -n "$top" \
    | while read -r pct dso _ sym srcline; do
        text=""
        file=${srcline%%:*}; line=${srcline##*:}
        src=$(find "$root/lib" -name "$file" 2>/dev/null | head -1)
        if [[ -n $src && $line =~ ^[0-9]+$ ]]; then text=$(sed -n "${line}p" "$src" | sed 's/^ *//'); fi
        printf '%7s  %-24.24s %-28.28s %-28.28s %s\n' "$pct" "$dso" "$sym" "$srcline" "$text"
      done
}

echo
echo "== main thread (tid $main_tid): share of the epoch's wall time"
report --tid "$main_tid" --percentage relative
echo
echo "== all threads: share of CPU time"
report
