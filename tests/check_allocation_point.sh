#!/usr/bin/env bash
# Every allocation of libkd goes through lib/alloc.c (a handle's kd_allocator, or malloc/free
# there), so that hosts' allocators see every byte and tests can fail the n-th allocation: no
# other file of lib/ may call the C library's allocation functions.
# Usage: check_allocation_point.sh <lib directory>
set -euo pipefail
lib=$1
pattern='\b(malloc|calloc|realloc|reallocarray|free|strdup|strndup|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|asprintf|vasprintf)[[:space:]]*\('
hits=$(grep -nE "$pattern" "$lib"/*.c "$lib"/*.h | grep -v "^$lib/alloc.c:" || true)
if [ -n "$hits" ]; then
  echo "allocation outside lib/alloc.c:"
  echo "$hits"
  exit 1
fi
echo "ok: only lib/alloc.c calls the C library's allocator ($(ls "$lib"/*.c | wc -l) files checked)"
