#!/usr/bin/env bash
# Runs every libFuzzer target for a while (usage: run-all.sh BUILD_DIR SECONDS_EACH), each from a
# copy of its seed corpus in tests/fuzz/corpus/<name>/ (libFuzzer adds what it finds to the copy),
# and prints each one's executions. Fails on the first finding; the input is saved in the current
# folder as crash-*/oom-*/timeout-* (reproduce: BUILD_DIR/tests/fuzz/fuzz_NAME crash-...).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-asan}
seconds=${2:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in safetensors_header tokenizer configs image lora_file; do
  mkdir -p "$work/$name"
  cp tests/fuzz/corpus/$name/* "$work/$name/"
  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
  case $name in
    image) args+=(-max_len=65536) ;;
    configs) args+=(-max_len=4096 -dict=tests/fuzz/configs.dict) ;;
    lora_file) args+=(-max_len=4096 -dict=tests/fuzz/lora.dict) ;;
    *) args+=(-max_len=4096) ;;
  esac
  echo "-- fuzz_$name: ${seconds} s"
  "$dir/tests/fuzz/fuzz_$name" "${args[@]}" "$work/$name" 2>"$work/$name.log" || {
    grep -v '^#' "$work/$name.log" | tail -40
    exit 1
  }
  grep -E "stat::number_of_executed_units|^Done " "$work/$name.log" | sed "s/^/   fuzz_$name: /"
done
