#!/usr/bin/env python3
"""diffusers_latency.py: time Hugging Face diffusers' own modules on CPU with bench_latency's shapes.

A benchmark harness for comparing libsd against diffusers on the same machine; libsd never
depends on it. Every model is built from the local config.json files with random weights
(nothing is downloaded), which gives real timings but says nothing about image quality.

What one row times (batch B images, H x W pixels, classifier-free guidance as in bench_latency):
  unet  one UNet2DConditionModel forward: latents [2B, 4, H/8, W/8], one timestep,
        encoder_hidden_states [2B, 77, cross_attention_dim]      (bench_latency: unet_eval_s)
  vae   AutoencoderKL.decode of latents [B, 4, H/8, W/8]          (bench_latency: vae_decode_s)
  text  CLIPTextModel on input_ids [2B, 77]                       (bench_latency: text_encoder_s,
        which also includes tokenization)
in diffusers' best plain CPU mode: weights in the precision's dtype, channels_last UNet and VAE,
the default attention processor (AttnProcessor2_0, i.e. scaled_dot_product_attention), under
torch.inference_mode(); no torch.compile, no IPEX.

Set up (once; installs into the venv that already has torch):
  .venv-torch/bin/pip install -r bench/compare/requirements.txt

Run (from the repository root):
  .venv-torch/bin/python bench/compare/diffusers_latency.py --precision bf16,fp32 \
      --warmup 1 --repeats 3 --csv diffusers.csv --json diffusers.json
  # and libsd on the same machine, same shapes:
  ./build/bench/bench_latency --model random:sd-v1-5 --precision bf16,fp32 --warmup 1 --repeats 3 ...

This script installs nothing; it only needs the packages of requirements.txt.
"""

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import sys
import time

# Offline by construction: never let transformers / huggingface_hub reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_CONFIG_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "weights", "sd-v1-5"))

STAGES = ("unet", "vae", "text")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

FIELDS = [
    "tool", "diffusers_version", "transformers_version", "torch_version", "python_version", "cpu",
    "config_dir", "precision", "stage", "input_shape", "batch", "height", "width", "threads",
    "channels_last", "attention_processor", "warmup", "repeats", "median_s", "min_s", "max_s",
    "samples_s",
]


def comma_list(allowed, what):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{what}: empty list")
        for item in items:
            if item not in allowed:
                raise argparse.ArgumentTypeError(
                    f"{what}: unknown '{item}' (choose from {', '.join(allowed)})")
        return list(dict.fromkeys(items))  # keep order, drop repeats
    return parse


def int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Latency of diffusers' UNet / VAE decode / CLIP text encoder on CPU, "
                    "random weights from local configs, with libsd bench_latency's shapes.")
    p.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR,
                   help="folder with unet/, vae/, text_encoder/ config.json (default: %(default)s)")
    p.add_argument("--precision", type=comma_list(tuple(PRECISIONS), "--precision"),
                   default=["fp32"], help="comma list of fp32, bf16, fp16 (default: fp32)")
    p.add_argument("--batch", type=int_at_least(1), default=1,
                   help="images per generation; the UNet and text encoder see 2x (CFG) (default: 1)")
    p.add_argument("--height", type=int_at_least(8), default=512, help="image height in pixels")
    p.add_argument("--width", type=int_at_least(8), default=512, help="image width in pixels")
    p.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed calls per row")
    p.add_argument("--repeats", type=int_at_least(1), default=3, help="timed calls per row")
    p.add_argument("--threads", type=int_at_least(0), default=0,
                   help="torch.set_num_threads (0: all logical CPUs, as libsd does)")
    p.add_argument("--stages", type=comma_list(STAGES, "--stages"), default=list(STAGES),
                   help="comma list of unet, vae, text (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights and inputs")
    p.add_argument("--csv", default="", help="write the rows to this CSV file")
    p.add_argument("--json", default="", help="write the rows to this JSON file (a list of objects)")
    args = p.parse_args(argv)
    if args.height % 8 or args.width % 8:
        p.error(f"--height and --width must be multiples of 8, got {args.height}x{args.width}")
    return args


def cpu_model_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_atomically(path, write):
    """Write through a temporary file beside `path`, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_csv(path, rows):
    def write(f):
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for row in rows:
            out = dict(row)
            out["samples_s"] = json.dumps(row["samples_s"])
            out["input_shape"] = json.dumps(row["input_shape"])
            w.writerow(out)
    write_atomically(path, write)


def write_json(path, rows):
    write_atomically(path, lambda f: (json.dump(rows, f, indent=2), f.write("\n")))


def format_table(rows):
    headers = ["precision", "stage", "input", "threads", "median s", "min s", "max s", "n"]
    body = [[r["precision"], r["stage"], "x".join(str(d) for d in r["input_shape"]), str(r["threads"]),
             f"{r['median_s']:.4f}", f"{r['min_s']:.4f}", f"{r['max_s']:.4f}", str(len(r["samples_s"]))]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 2 else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    import torch
    import diffusers
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)

    def config_path(sub):
        path = os.path.join(args.config_dir, sub)
        if not os.path.isfile(os.path.join(path, "config.json")):
            sys.exit(f"diffusers_latency: no {sub}/config.json in {args.config_dir}")
        return path

    # fp32 base models with random weights, built once per stage on first use.
    def build(stage):
        if stage == "unet":
            return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_path("unet")))
        if stage == "vae":
            return AutoencoderKL.from_config(AutoencoderKL.load_config(config_path("vae")))
        return CLIPTextModel(CLIPTextConfig.from_pretrained(config_path("text_encoder")))

    bases = {}

    def base(stage):
        if stage not in bases:
            t0 = time.perf_counter()
            bases[stage] = build(stage).eval()
            print(f"built {stage} with random weights in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        return bases[stage]

    def attention_processor(model):
        procs = getattr(model, "attn_processors", None)
        if not procs:
            # transformers' CLIP attention is its own module, not a diffusers processor.
            impl = getattr(model.config, "_attn_implementation", None)
            return f"transformers:{impl or 'eager'}"
        return ",".join(sorted({type(p).__name__ for p in procs.values()}))

    def inputs(stage, model, dtype):
        g = torch.Generator().manual_seed(args.seed)
        lh, lw = args.height // 8, args.width // 8
        if stage == "unet":
            c = model.config
            latents = torch.randn(2 * args.batch, c.in_channels, lh, lw, generator=g).to(dtype)
            context = torch.randn(2 * args.batch, 77, c.cross_attention_dim, generator=g).to(dtype)
            timestep = torch.tensor(500, dtype=torch.long)
            return lambda: model(latents, timestep, encoder_hidden_states=context, return_dict=False)[0], \
                list(latents.shape)
        if stage == "vae":
            latents = torch.randn(args.batch, model.config.latent_channels, lh, lw, generator=g).to(dtype)
            return lambda: model.decode(latents, return_dict=False)[0], list(latents.shape)
        c = model.config
        ids = torch.randint(0, c.vocab_size, (2 * args.batch, c.max_position_embeddings), generator=g)
        return lambda: model(input_ids=ids, return_dict=False)[0], list(ids.shape)

    common = {
        "tool": "diffusers",
        "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu": cpu_model_name(),
        "config_dir": os.path.abspath(args.config_dir),
        "batch": args.batch,
        "height": args.height,
        "width": args.width,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }

    rows = []
    for precision in args.precision:
        dtype = getattr(torch, PRECISIONS[precision])
        for stage in args.stages:
            if precision == args.precision[-1]:
                model = base(stage).to(dtype)  # its last use: cast in place, keep no fp32 copy
                del bases[stage]
            elif dtype != torch.float32:
                model = copy.deepcopy(base(stage)).to(dtype)
            else:
                model = base(stage)
            channels_last = stage in ("unet", "vae")
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            call, shape = inputs(stage, model, dtype)
            samples = []
            with torch.inference_mode():
                for _ in range(args.warmup):
                    call()
                for r in range(args.repeats):
                    t0 = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - t0)
                    print(f"{precision} {stage}: run {r + 1}/{args.repeats} {samples[-1]:.4f} s",
                          file=sys.stderr, flush=True)
            row = dict(common)
            row.update({
                "precision": precision,
                "stage": stage,
                "input_shape": shape,
                "channels_last": channels_last,
                "attention_processor": attention_processor(model),
                "median_s": statistics.median(samples),
                "min_s": min(samples),
                "max_s": max(samples),
                "samples_s": samples,
            })
            rows.append({k: row[k] for k in FIELDS})
            del model, call

    print(f"diffusers {common['diffusers_version']}  transformers {common['transformers_version']}  "
          f"torch {common['torch_version']}  cpu: {common['cpu']}  threads {common['threads']}  "
          f"{args.width}x{args.height}  batch {args.batch}  warmup {args.warmup}  repeats {args.repeats}")
    print(format_table(rows))
    if args.csv:
        write_csv(args.csv, rows)
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
