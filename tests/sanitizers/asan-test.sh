#!/usr/bin/env bash
# The unit and golden tests under ASan+UBSan (usage: asan-test.sh BUILD_DIR, after asan-build.sh).
# Not run here: e2e (whole generations against diffusers, minutes under ASan), cli and bench (they
# drive the tools, not built in this folder), install, cuda, soak, and public_api.* (they need
# libsd.so and a program of their own; the Release run covers them).
# Any ASan or UBSan report fails its test: UBSan aborts (-fno-sanitize-recover), ASan exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-asan}
here=$PWD/tests/sanitizers
# LeakSanitizer: LibTorch's and libgomp's own start-up allocations stay reachable only through
# uninstrumented globals at exit; lsan.supp names those libraries only (see the file).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$dir" -L "unit|golden" -LE "e2e|cli|bench|install|cuda|soak" -E "^public_api\." \
      --output-on-failure --no-tests=error -j"$(nproc)"
