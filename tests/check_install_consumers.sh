#!/usr/bin/env bash
# Installs the built tree into a scratch prefix, then builds and runs C and C++ consumers
# against the installed files only: through find_package(libkd 1 CONFIG) and through
# pkg-config (shared, and static with --static). Checks that the versions reported by the
# library, the CMake package and libkd.pc all equal the project version.
# The consumer project is configured with the generator and build program the project itself
# was configured with, so that it needs no tool the project's own build did not need.
# usage: check_install_consumers.sh <build dir> <scratch dir> <consumer source dir> <version>
#                                   <cc> <c++> <cmake> <generator> <make program>
set -euo pipefail
build=$1 scratch=$2 source=$3 version=$4 cc=$5 cxx=$6 cmake=$7 generator=$8 make_program=$9
prefix=$scratch/prefix

rm -rf "$scratch"
mkdir -p "$scratch"
"$cmake" --install "$build" --prefix "$prefix" > "$scratch/install.log"

expect_version() { # <what> <value>
  if [ "$2" != "$version" ]; then
    echo "$1 reports version '$2', expected $version" >&2
    exit 1
  fi
}

# 1. CMake package.
"$cmake" -S "$source" -B "$scratch/cmake" -G "$generator" -DCMAKE_MAKE_PROGRAM="$make_program" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release > "$scratch/cmake.log"
"$cmake" --build "$scratch/cmake" > "$scratch/cmake-build.log"
expect_version "the CMake package" "$(cat "$scratch/cmake/package_version.txt")"
for program in consumer_c consumer_cxx consumer_c_static; do
  expect_version "$program (find_package)" "$("$scratch/cmake/$program")"
done

# 2. pkg-config.
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name libkd.pc)")
expect_version "libkd.pc" "$(pkg-config --modversion libkd)"
libdir=$(pkg-config --variable=libdir libkd)
# shellcheck disable=SC2046 # word splitting of pkg-config's flags is intended
"$cc" -std=c11 -Wall -Wextra -Werror -o "$scratch/pc_c" "$source/consumer.c" \
  $(pkg-config --cflags --libs libkd) -lm -Wl,-rpath,"$libdir"
# shellcheck disable=SC2046
"$cxx" -std=c++11 -Wall -Wextra -Werror -o "$scratch/pc_cxx" "$source/consumer.cpp" \
  $(pkg-config --cflags --libs libkd) -Wl,-rpath,"$libdir"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$scratch/pc_c_static" "$source/consumer.c" \
  $(pkg-config --cflags --libs --static libkd | sed 's/-lkd\b/-l:libkd.a/')
for program in pc_c pc_cxx pc_c_static; do
  expect_version "$program (pkg-config)" "$("$scratch/$program")"
done

# The static consumer must not need libkd.so at run time.
if ldd "$scratch/pc_c_static" | grep -q 'libkd\.so'; then
  echo "the static consumer depends on libkd.so" >&2
  exit 1
fi
echo "installed libkd $version consumed through find_package and pkg-config (C, C++, shared, static)"
