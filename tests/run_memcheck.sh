#!/usr/bin/env bash
# The test suite under valgrind memcheck: every test labelled `unit` of a build (the valgrind
# preset) runs as `ctest -T memcheck` under
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
# and fails on any memory error or definite leak. First the canary (tests/sanitizer_canary.c)
# shows that these options do fail a run on an invalid read and on a definite leak.
#   run_memcheck.sh <build dir> [ctest arguments, e.g. -E pattern -j 2]
set -euo pipefail
build=$1
shift
options="--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30"
export OPENBLAS_NUM_THREADS=1 # one BLAS thread: deterministic, and faster under valgrind

for mode in heap leak; do
  status=0
  valgrind -q $options "$build/tests/sanitizer_canary" "$mode" >/dev/null 2>&1 || status=$?
  if [ "$status" -ne 99 ]; then
    echo "valgrind did not fail the $mode canary (exit status $status)" >&2
    exit 1
  fi
done
echo "valgrind fails the canaries (invalid read, definite leak): exit status 99"

cd "$build"
ctest -T memcheck --output-on-failure -L unit \
  --overwrite MemoryCheckCommand="$(command -v valgrind)" \
  --overwrite MemoryCheckCommandOptions="$options" "$@"
