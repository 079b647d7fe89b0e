#!/usr/bin/env python3
"""The summary table of bench/gpu-check: what each stage gave, next to issue 13's goals.

    python3 bench/gpu_check_summary.py OUTDIR STAGES_TXT

Reads OUTDIR's latency.csv, throughput.json, quality_metrics.csv and gpu_tests.txt (each may be
missing: its stage failed or ran out of time) and prints plain text. Standard library only.
The model is random:sd-v1-5: timings and memory are real, PSNR/SSIM of random weights are not a
quality result (they show how far fp16 drifts from fp32 on the same seed, nothing more).
"""
import csv
import json
import os
import re
import sys

GOAL_LATENCY_S = 0.40       # fp16, batch 1, 50 PNDM steps, 512x512, end to end
GOAL_PEAK_ALLOCATED = 2.6e9  # fp16 batch 1
GOAL_IMAGES_PER_MIN = 300    # at the best batch, 50 steps


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(value, digits=3, scale=1.0, unit=""):
    return "-" if value is None else f"{value / scale:.{digits}f}{unit}"


def verdict(value, goal, lower_is_better=True):
    if value is None:
        return "not measured"
    met = value <= goal if lower_is_better else value >= goal
    return "met" if met else "NOT met"


def main():
    if len(sys.argv) != 3:
        print("usage: gpu_check_summary.py OUTDIR STAGES_TXT", file=sys.stderr)
        return 2
    out, stages = sys.argv[1], sys.argv[2]
    lines = ["# gpu-check summary (random:sd-v1-5: real timings, random weights)", ""]
    env = os.path.join(out, "environment.txt")
    if os.path.exists(env):
        lines += ["## environment", *open(env).read().strip().splitlines(), ""]
    lines += ["## stages", *open(stages).read().strip().splitlines(), ""]

    tests = os.path.join(out, "gpu_tests.txt")
    if os.path.exists(tests):
        text = open(tests).read()
        found = re.findall(r"^(All tests passed.*|test cases:.*)$", text, re.M)
        lines += ["## GPU tests (golden cases on CUDA, fp32 within the manifest tolerances)",
                  found[-1] if found else "no Catch2 totals in gpu_tests.txt", ""]

    latency = read_csv(os.path.join(out, "latency.csv"))
    fp16_graph = None
    if latency:
        lines.append("## latency, batch 1, 512x512 (median of the repeats)")
        lines.append(f"{'precision':<10} {'autocast':<8} {'graphs':<7} {'steps':>5} {'latency s':>10} "
                     f"{'UNet s/eval':>11} {'VAE s':>7} {'peak alloc GB':>13} {'reserved GB':>11}")
        for row in latency:
            graphs = "yes" if row.get("cuda_graph") == "true" else ("asked" if row.get("cuda_graphs") == "true" else "no")
            lat = number(row.get("latency_s_median"))
            alloc = number(row.get("peak_device_allocated_bytes"))
            lines.append(f"{row.get('precision', '?'):<10} {row.get('autocast', '?'):<8} {graphs:<7} "
                         f"{row.get('steps', '?'):>5} {fmt(lat):>10} {fmt(number(row.get('unet_eval_s_median')), 4):>11} "
                         f"{fmt(number(row.get('vae_decode_s'))):>7} {fmt(alloc, 2, 1e9):>13} "
                         f"{fmt(number(row.get('reserved_after_run_bytes')), 2, 1e9):>11}")
            if row.get("precision") == "fp16" and row.get("autocast") == "false" and row.get("steps") == "50":
                best = fp16_graph
                if best is None or (lat is not None and lat < best[0]):
                    fp16_graph = (lat, alloc)
        lines.append("")

    best_ipm = None
    thr_path = os.path.join(out, "throughput.json")
    if os.path.exists(thr_path):
        rows = json.load(open(thr_path))
        lines.append("## throughput, fp16 (largest batch: doubling, then bisection)")
        for row in rows:
            if row.get("kind") != "summary":
                continue
            ipm = row.get("best_images_per_min")
            if row.get("steps") == 50 and ipm is not None:
                best_ipm = max(best_ipm or 0, ipm)
            failed = row.get("first_failed_batch")
            lines.append(f"VAE slicing {'on ' if row.get('vae_slicing') else 'off'}: max batch {row.get('max_batch')} "
                         f"({'batch %s failed' % failed if failed else 'no failure up to %s' % row.get('max_batch_limit')}), "
                         f"best {fmt(ipm, 1)} images/min at batch {row.get('best_batch')}")
        lines.append("")

    quality = read_csv(os.path.join(out, "quality_metrics.csv"))
    if quality:
        lines.append("## fp32 vs fp16, same seed (random weights: drift, not image quality)")
        finals = [r for r in quality if r.get("run") == "final"]
        for row in finals:
            lines.append(f"steps {row.get('steps'):>3}: PSNR {fmt(number(row.get('psnr')), 2)} dB, "
                         f"SSIM {fmt(number(row.get('ssim')), 4)}")
        history = [r for r in quality if r.get("run") != "final"]
        if history:
            last = history[-1]
            lines.append(f"per-step run: {len(history)} steps, PSNR after the last {fmt(number(last.get('psnr')), 2)} dB")
        lines.append("")

    lines.append("## issue 13's goals")
    lat, alloc = fp16_graph if fp16_graph else (None, None)
    lines.append(f"fp16 batch 1, 50 steps, end to end <= {GOAL_LATENCY_S} s: {fmt(lat)} s, {verdict(lat, GOAL_LATENCY_S)}")
    lines.append(f"fp16 batch 1 peak allocated <= {GOAL_PEAK_ALLOCATED / 1e9} GB: {fmt(alloc, 2, 1e9)} GB, "
                 f"{verdict(alloc, GOAL_PEAK_ALLOCATED)}")
    lines.append(f"throughput at the best batch >= {GOAL_IMAGES_PER_MIN} images/min: {fmt(best_ipm, 1)}, "
                 f"{verdict(best_ipm, GOAL_IMAGES_PER_MIN, lower_is_better=False)}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
