#!/usr/bin/env bash
# Training-epoch benchmark: libkd (kd_trainer_step) against the bare cblas_sgemm calls of the
# same epoch and against PyTorch, with 1 and 2 BLAS threads. Not part of ctest.
#
#   tests/benchmarks/run_train_epoch.sh [OUTPUT_DIR]
#
# Builds the release preset, runs build/release/tests/benchmarks/bench_train_epoch and
# tests/peer/pytorch_train_epoch.py (Debian's /usr/bin/python3 with python3-torch) for each
# thread count, keeps their JSON files in OUTPUT_DIR (default build/release/bench) and prints a
# Markdown table of the ratios. Environment:
#   THREADS="1 2"        thread counts to run (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
#                        torch.set_num_threads all get the same value);
#   BATCHES=600          batches of 100 per epoch (fewer for a quick look);
#   SGEMM_REPS=3         repetitions of the sgemm-only replay (the best is reported);
#   PHASES=1             also time forward / loss / zero / backward / optimizer per epoch;
#   SKIP_PYTORCH=1       libkd only;
#   PYTORCH_PASSIVE=1    also run PyTorch with OMP_WAIT_POLICY=PASSIVE (its OpenMP threads then
#                        sleep instead of spinning while OpenBLAS's threads need the cores);
#   OPENBLAS_CORETYPE    passed through: forces OpenBLAS's kernel (e.g. SkylakeX) when its
#                        CPU detection falls back to a generic one (see docs/performance-training.md).
# Each epoch takes seconds; the whole run takes several minutes. The machine should be idle:
# the load average is printed before every run so that a disturbed run can be spotted.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/build/release/bench}
threads=${THREADS:-1 2}
batches=${BATCHES:-600}
sgemm_reps=${SGEMM_REPS:-3}
python=/usr/bin/python3
mkdir -p "$out"
if [[ ${SKIP_PYTORCH:-0} != 1 ]] && ! "$python" -c 'import torch' 2>/dev/null; then
  echo "skipping the PyTorch runs: $python cannot import torch (apt-get install python3-torch)"
  SKIP_PYTORCH=1
fi

cd "$root"
cmake --preset release >/dev/null
cmake --build --preset release --target bench_train_epoch
bench=$root/build/release/tests/benchmarks/bench_train_epoch

extra=()
if [[ ${PHASES:-0} == 1 ]]; then extra+=(--phases); fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs online"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
for t in $threads; do
  echo
  echo "== libkd, $t thread(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "\$ OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t $bench --batches $batches --sgemm-reps $sgemm_reps ${extra[*]} --json $out/libkd-$t.json"
  OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$bench" --batches "$batches" \
    --sgemm-reps "$sgemm_reps" "${extra[@]}" --json "$out/libkd-$t.json"
  if [[ ${SKIP_PYTORCH:-0} != 1 ]]; then
    echo
    echo "== PyTorch, $t thread(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "\$ OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t $python tests/peer/pytorch_train_epoch.py $t --batches $batches --json $out/pytorch-$t.json"
    OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$python" tests/peer/pytorch_train_epoch.py "$t" \
      --batches "$batches" --json "$out/pytorch-$t.json"
  else
    rm -f "$out/pytorch-$t.json"
  fi
  if [[ ${SKIP_PYTORCH:-0} != 1 && ${PYTORCH_PASSIVE:-0} == 1 ]]; then
    echo
    echo "== PyTorch, $t thread(s), OMP_WAIT_POLICY=PASSIVE; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "\$ OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t $python tests/peer/pytorch_train_epoch.py $t --batches $batches --json $out/pytorch-passive-$t.json"
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$python" \
      tests/peer/pytorch_train_epoch.py "$t" --batches "$batches" --json "$out/pytorch-passive-$t.json"
  else
    rm -f "$out/pytorch-passive-$t.json"
  fi
done

echo
"$python" - "$out" $threads <<'EOF'
import json
import os
import sys

out, threads = sys.argv[1], sys.argv[2:]


def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return {}
    return {n["name"]: n for n in json.load(open(path))["networks"]}


def pytorch(p, kd_seconds):
    return f"{p['epoch_seconds']:.2f} | {p['epoch_seconds'] / kd_seconds:.2f}" if p else "- | -"


passive = any(load(f"pytorch-passive-{t}.json") for t in threads)
for t in threads:
    print(f"{t} thread(s): {json.load(open(os.path.join(out, f'libkd-{t}.json')))['blas']}")
print("on CPU: the libkd main thread's CPU time over the epoch / its wall time; well below 100%"
      " means other processes took the CPU (a disturbed run)")
print()
print("| threads | network | libkd epoch s | on CPU | sgemm-only s | sgemm GFLOP/s | libkd / sgemm"
      " | PyTorch epoch s | PyTorch / libkd |" +
      (" PyTorch passive s | passive / libkd |" if passive else ""))
print("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if passive else ""))
for t in threads:
    kd = json.load(open(os.path.join(out, f"libkd-{t}.json")))
    pt, pp = load(f"pytorch-{t}.json"), load(f"pytorch-passive-{t}.json")
    for n in kd["networks"]:
        name = f"{n['name']} {n['widths']}"
        if "sgemm_seconds" in n:
            sg = f"{n['sgemm_seconds']:.2f} | {n['sgemm_gflops']:.0f} | {n['ratio_epoch_over_sgemm']:.2f}"
        else:
            sg = "- | - | -"
        on_cpu = f"{100 * n['epoch_main_thread_cpu_seconds'] / n['epoch_seconds']:.0f}%"
        row = f"| {t} | {name} | {n['epoch_seconds']:.2f} | {on_cpu} | {sg} | {pytorch(pt.get(n['name']), n['epoch_seconds'])} |"
        if passive:
            row += f" {pytorch(pp.get(n['name']), n['epoch_seconds'])} |"
        print(row)
EOF
