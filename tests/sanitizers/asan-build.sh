#!/usr/bin/env bash
# The clang ASan+UBSan build (usage: asan-build.sh BUILD_DIR): the library, the Catch2 suite and the
# libFuzzer targets, all in one build folder so that CI compiles the instrumented sources once.
# -O1 with line tables: readable sanitizer reports, and faster to compile on 2 cores than -O2 -g.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-asan}
cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
      -DLIBSD_SANITIZE=ON -DLIBSD_FUZZ=ON -DLIBSD_BUILD_TOOLS=OFF -DLIBSD_BUILD_BENCH=OFF -DLIBSD_UNITY_BUILD=ON ${CMAKE_EXTRA_ARGS:-}
cmake --build "$dir" -j"$(nproc)" --target sd_tests libsd_fuzzers
