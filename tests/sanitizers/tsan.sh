#!/usr/bin/env bash
# The two-pipeline isolation test under ThreadSanitizer (usage: tsan.sh BUILD_DIR): builds only the
# library and tests/test_pipeline_isolation.cpp (target sd_tsan_tests), then runs it (label tsan).
# libsd is compiled without OpenMP in this build (LIBSD_SANITIZE_THREAD): libgomp is not instrumented,
# so TSan would not see its barriers and would report every at::parallel_for worker as racing with
# the thread that started it. Two pipelines on two std::threads, the point of the test, stay.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-tsan}
cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
      -DLIBSD_SANITIZE_THREAD=ON -DLIBSD_BUILD_TOOLS=OFF -DLIBSD_BUILD_BENCH=OFF -DLIBSD_UNITY_BUILD=ON ${CMAKE_EXTRA_ARGS:-}
cmake --build "$dir" -j"$(nproc)" --target sd_tsan_tests
ctest --test-dir "$dir" -L tsan --output-on-failure --no-tests=error
