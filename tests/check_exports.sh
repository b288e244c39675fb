#!/usr/bin/env bash
# Checks the dynamic symbol table of libkd.so.1: SONAME libkd.so.1, every defined dynamic
# symbol is kd_*@@LIBKD_1.0, and the exported functions are exactly the declared ones.
# usage: check_exports.sh <path to libkd.so> <file with one declared function name a line>
set -euo pipefail
lib=$1 declared=$2

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" != "libkd.so.1" ]; then
  echo "SONAME is '$soname', expected libkd.so.1" >&2
  exit 1
fi

symbols=$(nm -D --defined-only --with-symbol-versions "$lib" | awk '{print $3}')
bad=$(printf '%s\n' "$symbols" | grep -v -E '^kd_[a-z0-9_]+@@LIBKD_1\.0$' || true)
if [ -n "$bad" ]; then
  printf 'symbols other than kd_*@@LIBKD_1.0 exported:\n%s\n' "$bad" >&2
  exit 1
fi

exported=$(printf '%s\n' "$symbols" | sed 's/@@.*//' | sort)
if ! diff <(sort "$declared") <(printf '%s\n' "$exported"); then
  echo "exported functions (>) differ from those declared in include/ (<)" >&2
  exit 1
fi
echo "libkd.so.1 exports exactly the $(printf '%s\n' "$exported" | wc -l) declared kd_* functions at LIBKD_1.0"
