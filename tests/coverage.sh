#!/usr/bin/env bash
# Line and branch coverage of lib/ from a build of the `coverage` preset whose tests have run:
#   cmake --preset coverage --fresh && cmake --build --preset coverage && ctest --preset coverage
#   tests/coverage.sh build/coverage            # summary; the per-line report in <build>/coverage
# Prints lcov's summary and every line of lib/ that no test executed.
set -euo pipefail
build=$(cd "$1" && pwd)
source=$(cd "$(dirname "$0")/.." && pwd)
out="$build/coverage"
mkdir -p "$out"
rc=(--rc lcov_branch_coverage=1)
lcov -q "${rc[@]}" --capture --directory "$build" --base-directory "$source" --output-file "$out/all.info"
lcov -q "${rc[@]}" --extract "$out/all.info" "$source/lib/*" --output-file "$out/lib.info"
lcov "${rc[@]}" --summary "$out/lib.info"
genhtml -q "${rc[@]}" --output-directory "$out/html" "$out/lib.info" >/dev/null
# Uncovered lines (DA:<line>,0) per file.
awk -F'[:,]' '/^SF:/ {file = $2} /^DA:/ && $3 == 0 {print file ":" $2}' "$out/lib.info" \
  | sed "s|^$source/||" > "$out/uncovered-lines.txt"
echo "uncovered lines of lib/: $(wc -l < "$out/uncovered-lines.txt") (list: $out/uncovered-lines.txt, report: $out/html/index.html)"
