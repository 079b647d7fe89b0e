#!/usr/bin/env bash
# bench/gpu-check up to where a GPU is needed: its arguments, its dry run, and that without a GPU it
# stops at once (exit 3, one clear line, nothing built or written). Then its summary script on a
# small made-up output folder. Exit 77 (CTest: skipped) for the no-GPU check on a machine with a GPU.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CHECK="$ROOT/bench/gpu-check"
GOLDEN="${1:?usage: test_gpu_check.sh GOLDEN_DIR}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect() {  # expect RC PATTERN ARGS...: exit code RC, stderr (or stdout) matching PATTERN
  local want="$1" pattern="$2"; shift 2
  "$CHECK" "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  [[ $rc = "$want" ]] || fail "gpu-check $* exited $rc, expected $want: $(cat "$T/err")"
  grep -q -- "$pattern" "$T/out" "$T/err" || fail "gpu-check $*: no '$pattern' in: $(cat "$T/out" "$T/err")"
}

expect 2 "no OUTDIR given"
expect 2 "unknown option '--fast'" "$T/a" --fast --golden "$GOLDEN"
expect 2 "one OUTDIR only" "$T/a" "$T/b" --golden "$GOLDEN"
expect 2 "no golden data" "$T/a" --golden "$T/nowhere"
mkdir "$T/full" && touch "$T/full/old.csv"
expect 2 "is not empty" "$T/full" --golden "$GOLDEN"
expect 2 "--python needs a program" "$T/a" --golden "$GOLDEN" --python
expect 0 "bench_latency\|latency:" "$T/a" --golden "$GOLDEN" --dry-run
grep -q "graphs on,off" "$T/out" || fail "the dry run's plan does not measure with and without CUDA graphs"
grep -q "VAE slicing on,off" "$T/out" || fail "the dry run's plan does not search with and without VAE slicing"
[[ ! -e "$T/a" ]] || fail "the dry run created OUTDIR"

# The summary, on a made-up folder: the goals are judged from the rows.
mkdir "$T/made"
printf 'precision,autocast,cuda_graphs,cuda_graph,steps,latency_s_median,unet_eval_s_median,vae_decode_s,peak_device_allocated_bytes,reserved_after_run_bytes\n' > "$T/made/latency.csv"
printf 'fp16,false,true,true,50,0.35,0.006,0.02,2400000000,3000000000\nfp32,false,true,true,50,1.9,0.03,0.1,5000000000,6000000000\n' >> "$T/made/latency.csv"
printf '[{"kind":"summary","steps":50,"vae_slicing":true,"max_batch":40,"first_failed_batch":41,"max_batch_limit":64,"best_images_per_min":280.5,"best_batch":32}]\n' > "$T/made/throughput.json"
echo "build ok in 100 s" > "$T/stages.txt"
python3 "$ROOT/bench/gpu_check_summary.py" "$T/made" "$T/stages.txt" > "$T/summary" || fail "the summary script failed"
grep -q "end to end <= 0.4 s: 0.350 s, met" "$T/summary" || fail "latency goal not judged: $(cat "$T/summary")"
grep -q "peak allocated <= 2.6 GB: 2.40 GB, met" "$T/summary" || fail "memory goal not judged: $(cat "$T/summary")"
grep -q "images/min: 280.5, NOT met" "$T/summary" || fail "throughput goal not judged: $(cat "$T/summary")"

# Without a GPU: exit 3 at once, before building anything.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
  echo "a GPU is visible here: the no-GPU exit is not tested (run bench/gpu-check itself)"
  exit 77
fi
start=$SECONDS
expect 3 "no NVIDIA GPU" "$T/gpu" --golden "$GOLDEN" --build-dir "$T/build"
(( SECONDS - start < 10 )) || fail "the no-GPU exit took $((SECONDS - start)) s"
[[ ! -e "$T/build" && ! -e "$T/gpu" ]] || fail "gpu-check built or wrote something without a GPU"
echo "gpu-check: arguments, dry run, summary and the no-GPU exit as expected"
