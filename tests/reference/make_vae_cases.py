#!/usr/bin/env python3
"""VAE tiling and tiny-autoencoder (TAESD) reference data for libsd's tests/test_vae_tiling.cpp and
tests/test_vae_tiny.cpp, made by diffusers itself.

Run by hand from the repository root (never in CI; the tests only read what this writes):

    .venv-torch/bin/python tests/reference/make_vae_cases.py

Reference stack (pinned; the script refuses another diffusers version): torch 2.11.0 (CPU),
diffusers 0.27.2, safetensors, numpy. Nothing is downloaded: both models are built from their
configs with seeded random weights. Deterministic: one CPU thread, seeded generators, torch
deterministic algorithms, sorted JSON; the same versions write the same bytes. It replaces
tests/data/vae/ (or --out DIR) entirely: run tests/reference/make_vae_single_file.py after it, which
adds the single-file (LDM key names) copy of vae_kl and its cases.

What is recorded:
  * AutoencoderKL with enable_tiling() (diffusers 0.27 semantics: tile_sample_min_size =
    config.sample_size, tile_latent_min_size = sample_size / 2**(len(block_out_channels) - 1),
    25 % overlap, blend_v/blend_h linear blending in place, tile by tile). The tiny VAE has
    sample_size 32 and 2 levels (factor 2), so tiling engages from 64 px on:
      - tiled decode of latents to 64x64 (batch 2) and 96x128 (h x w; the last tile column is a
        partial one) images, and the same 64x64 latents decoded untiled (they must differ);
      - tiled encode of 64x64 and 128x96 (h x w) images: the posterior's mean and logvar
        (DiagonalGaussianDistribution of the blended moments; logvar clamped to [-30, 20]).
  * AutoencoderTiny (TAESD) with small channels and diffusers' default block counts: decode
    (tanh(x / 3) * 3 clamp at the input, output in [-1, 1]) and encode (input [-1, 1] -> [0, 1]).
  * The same TAESD weights in the original single-file layout (madebyollin/taesd's
    taesd_encoder.safetensors / taesd_decoder.safetensors: nn.Sequential numbering, the decoder's
    layer 0 being its parameter-free Clamp), written by inverting the renaming in diffusers'
    scripts/convert_tiny_autoencoder_to_diffusers.py (encoder: "encoder.layers." + key; decoder:
    index - 1); the script checks that this renaming maps them back onto AutoencoderTiny strictly.

Layout (names in manifest.json are relative to the output folder):
  vae_kl/             diffusers AutoencoderKL folder (config.json, diffusion_pytorch_model.safetensors)
  taesd/              diffusers AutoencoderTiny folder (the same two files)
  taesd_original/     taesd_encoder.safetensors, taesd_decoder.safetensors (original key names)
  cases/<case>.json/.safetensors   one case each: inputs and diffusers' outputs, float32
  manifest.json       the cases with their tolerances

Tolerances: each case runs in float32 (the stored reference) and again in float64 on the same
inputs (a float64 copy of the model); atol/rtol = max(1e-4, 10 x the measured fp32-vs-fp64 max
error), rel error = max|diff| / max|ref|. Each case also records how far a plausible mistake lands
("sensitivity_max_abs"), which must exceed the tolerance for the case to catch it.
"""
import argparse
import copy
import shutil
from pathlib import Path

import refcommon as rc  # first: sets the offline/quiet environment before torch/diffusers load

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import AutoencoderKL, AutoencoderTiny  # noqa: E402

PINNED = {diffusers: "0.27.2"}
TORCH_TESTED = "2.11."

KL_CONFIG = dict(  # SD's AutoencoderKL, shrunk: 2 levels (factor 2) and sample_size 32
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    norm_num_groups=4,
    act_fn="silu",
    sample_size=32,
    scaling_factor=0.18215,
)

TINY_CONFIG = dict(  # madebyollin/taesd's diffusers config, with 8 instead of 64 channels
    in_channels=3,
    out_channels=3,
    encoder_block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    act_fn="relu",
    latent_channels=4,
    upsampling_scaling_factor=2,
    num_encoder_blocks=(1, 3, 3, 3),
    num_decoder_blocks=(3, 3, 3, 1),
    latent_magnitude=3,
    latent_shift=0.5,
    force_upcast=False,
    scaling_factor=1.0,
)


def plain(config):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}


# --------------------------------------------------------------------------------------------------
# models

def make_kl(folder):
    vae = AutoencoderKL(**KL_CONFIG).eval()
    # A gentler output layer keeps most decoded pixels inside [-1, 1] (as in make_sd2_tiny.py).
    rc.reinit(vae, seed=404, out_gain={"decoder.conv_out.weight": 0.5, "decoder.conv_out.bias": 0.5})
    vae.save_pretrained(str(folder), safe_serialization=True)
    return load_kl(folder)


def load_kl(folder):
    vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True).eval()
    assert vae.tile_sample_min_size == 32 and vae.tile_latent_min_size == 16, (
        vae.tile_sample_min_size, vae.tile_latent_min_size)
    return vae


def make_tiny(folder):
    tiny = AutoencoderTiny(**TINY_CONFIG).eval()
    rc.reinit(tiny, seed=505)
    with torch.no_grad():
        # Each block adds its conv branch to its input: halving the branch's last conv keeps the
        # activations near unit scale through the 10 blocks of each side.
        for name, p in tiny.named_parameters():
            if name.endswith(".conv.4.weight"):
                p.mul_(0.5)
        # Centre the decoder's output on [0, 1] (before its mul(2).sub(1)) and give the encoder's
        # latents about unit scale.
        tiny.decoder.layers[-1].bias.add_(0.33)
        tiny.encoder.layers[-1].weight.mul_(10)
        tiny.encoder.layers[-1].bias.mul_(10)
    tiny.save_pretrained(str(folder), safe_serialization=True)
    return AutoencoderTiny.from_pretrained(str(folder), local_files_only=True).eval()


def to_original(state_dict):
    """diffusers AutoencoderTiny names -> madebyollin/taesd's two nn.Sequential files (the inverse of
    scripts/convert_tiny_autoencoder_to_diffusers.py)."""
    enc, dec = {}, {}
    for k, v in state_dict.items():
        if k.startswith("encoder.layers."):
            enc[k[len("encoder.layers."):]] = v.clone()
        elif k.startswith("decoder.layers."):
            index, rest = k[len("decoder.layers."):].split(".", 1)
            dec[f"{int(index) + 1}.{rest}"] = v.clone()
        else:
            rc.fail(f"unexpected AutoencoderTiny key {k}")
    return enc, dec


def from_original(enc, dec):
    """What scripts/convert_tiny_autoencoder_to_diffusers.py (diffusers 0.27) does to the two files."""
    out = {f"encoder.layers.{k}": v for k, v in enc.items()}
    for k, v in dec.items():
        index, rest = k.split(".", 1)
        out[f"decoder.layers.{int(index) - 1}.{rest}"] = v
    return out


def write_original(tiny, folder):
    enc, dec = to_original(tiny.state_dict())
    check = AutoencoderTiny(**TINY_CONFIG)
    check.load_state_dict(from_original(enc, dec), strict=True)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(enc, str(folder / "taesd_encoder.safetensors"))
    save_file(dec, str(folder / "taesd_decoder.safetensors"))
    # The original decoder's first tensor is "1.weight" (layer 0 is the Clamp), as in madebyollin's file.
    assert "1.weight" in dec and "0.weight" not in dec and "0.weight" in enc
    return sorted(enc), sorted(dec)


# --------------------------------------------------------------------------------------------------
# cases

def tiled(vae, on):
    if on:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    return vae


@torch.no_grad()
def kl_decode(vae, z, tiling):
    return tiled(vae, tiling).decode(z).sample


@torch.no_grad()
def kl_encode(vae, x, tiling):
    d = tiled(vae, tiling).encode(x).latent_dist
    return d.mean, d.logvar


def tile_counts(length, tile_stride):
    return len(range(0, length, tile_stride))


def kl_decode_case(v32, v64, batch, h, w, seed, tiling=True):
    f = 2 ** (len(KL_CONFIG["block_out_channels"]) - 1)
    z = torch.randn(batch, 4, h // f, w // f, generator=torch.Generator("cpu").manual_seed(seed))
    out32 = kl_decode(v32, z, tiling)
    out64 = kl_decode(v64, z.double(), tiling)
    assert out32.shape == (batch, 3, h, w), out32.shape
    tensors = {"latents": z, "image": out32}
    tol = rc.tolerance([(out32, out64)])
    sens = {("untiled decode" if tiling else "tiled decode"): rc.error(kl_decode(v32, z, not tiling), out32)[0]}
    if tiling:
        other = copy.deepcopy(v32)
        other.tile_overlap_factor = 0.125
        sens["tile_overlap_factor 0.125"] = rc.error(kl_decode(other, z, True), out32)[0]
        # diffusers blends in place: a tile's right/lower neighbours blend with its blended edges.
        copied = copy.deepcopy(v32)
        copied.blend_v = lambda a, b, e: AutoencoderKL.blend_v(copied, a, b.clone(), e)
        copied.blend_h = lambda a, b, e: AutoencoderKL.blend_h(copied, a, b.clone(), e)
        sens["blend_v/blend_h on copies (not in place)"] = rc.error(kl_decode(copied, z, True), out32)[0]
    stride = int(v32.tile_latent_min_size * (1 - v32.tile_overlap_factor))
    extra = {"tiling": tiling,
             "tiles": [tile_counts(z.shape[2], stride), tile_counts(z.shape[3], stride)] if tiling else [1, 1],
             "geometry": {"tile": v32.tile_latent_min_size, "stride": stride,
                          "blend": int(v32.tile_sample_min_size * v32.tile_overlap_factor),
                          "keep": v32.tile_sample_min_size - int(v32.tile_sample_min_size * v32.tile_overlap_factor)}}
    return tensors, tol, sens, extra


def kl_encode_case(v32, v64, batch, h, w, seed):
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    mean32, logvar32 = kl_encode(v32, x, True)
    mean64, logvar64 = kl_encode(v64, x.double(), True)
    f = 2 ** (len(KL_CONFIG["block_out_channels"]) - 1)
    assert mean32.shape == (batch, 4, h // f, w // f), mean32.shape
    tensors = {"image": x, "mean": mean32, "logvar": logvar32}
    tol = rc.tolerance([(mean32, mean64), (logvar32, logvar64)])
    mean_u, _ = kl_encode(v32, x, False)
    sens = {"untiled encode (mean)": rc.error(mean_u, mean32)[0]}
    stride = int(v32.tile_sample_min_size * (1 - v32.tile_overlap_factor))
    blend = int(v32.tile_latent_min_size * v32.tile_overlap_factor)
    extra = {"tiling": True, "tiles": [tile_counts(h, stride), tile_counts(w, stride)],
             "geometry": {"tile": v32.tile_sample_min_size, "stride": stride, "blend": blend,
                          "keep": v32.tile_latent_min_size - blend}}
    return tensors, tol, sens, extra


@torch.no_grad()
def tiny_decode_case(t32, t64, batch, lh, lw, seed):
    # Raw latents (the SD pipeline divides by scaling_factor 1.0); x3 so that the tanh clamp bites.
    z = 3 * torch.randn(batch, 4, lh, lw, generator=torch.Generator("cpu").manual_seed(seed))
    out32 = t32.decode(z).sample
    out64 = t64.decode(z.double()).sample
    tensors = {"latents": z, "image": out32}
    tol = rc.tolerance([(out32, out64)])
    unclamped = t32.decoder.layers(z).mul(2).sub(1)
    sens = {"no tanh(x / 3) * 3 input clamp": rc.error(unclamped, out32)[0],
            "output not mapped to [-1, 1]": rc.error(t32.decoder.layers(torch.tanh(z / 3) * 3), out32)[0]}
    stats = {"image_fraction_outside_unit": float((out32.abs() > 1).float().mean()),
             "image_mean": float(out32.mean()), "image_std": float(out32.std())}
    return tensors, tol, sens, {"stats": stats}


@torch.no_grad()
def tiny_encode_case(t32, t64, batch, h, w, seed):
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    out32 = t32.encode(x).latents
    out64 = t64.encode(x.double()).latents
    tensors = {"image": x, "latents": out32}
    tol = rc.tolerance([(out32, out64)])
    sens = {"input not mapped to [0, 1]": rc.error(t32.encoder.layers(x), out32)[0]}
    stats = {"latents_std": float(out32.std())}
    return tensors, tol, sens, {"stats": stats}


# --------------------------------------------------------------------------------------------------

def write_case(out, name, kind, model, doc, result, entry_extra=None):
    """Writes cases/<name>.safetensors and .json under `out`; returns its manifest entry (plus
    `entry_extra`). Refuses a case whose plausible mistakes land within its tolerance."""
    tensors, tol, sens, extra = result
    path = out / (name + ".safetensors")
    rc.save_tensors(path, tensors)
    info = rc.tensor_info({k: rc.to_stored(v) for k, v in tensors.items()})
    meta = {"name": name, "kind": kind, "model": model, "doc": doc, "tolerance": tol,
            "sensitivity_max_abs": sens, "tensors": info}
    meta.update(extra)
    rc.write_json(out / (name + ".json"), meta)
    entry = {"name": name, "kind": kind, "model": model, "files": [name + ".safetensors", name + ".json"],
             "tensors": info, "sha256": {name + ".safetensors": rc.sha256(path)}, "tolerance": tol,
             "sensitivity_max_abs": sens}
    entry.update(extra)
    entry.update(entry_extra or {})
    worst = min(sens.values())
    if worst <= tol["atol"]:
        rc.fail(f"{name}: sensitivity {sens} does not exceed atol {tol['atol']}")
    print(f"{name}: atol {tol['atol']:.3g} rtol {tol['rtol']:.3g} "
          f"(fp32 vs fp64 {tol['measured_fp32_vs_fp64_max_abs']:.3g} abs, "
          f"{tol['measured_fp32_vs_fp64_max_rel']:.3g} rel); sensitivity {sens}; {extra.get('tiles', '')}"
          f"{extra.get('stats', '')}")
    return entry


def output_folder(doc):
    """The --out folder of a VAE reference script (default tests/data/vae), once the pinned versions
    are checked and torch is made deterministic."""
    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "vae")
    args = ap.parse_args()
    rc.check_versions(PINNED, TORCH_TESTED)
    rc.deterministic()
    return args.out


def main():
    out = output_folder(__doc__)
    if out.exists():
        shutil.rmtree(out)
    kl32 = make_kl(out / "vae_kl")
    kl64 = load_kl(out / "vae_kl").to(torch.float64)
    tiny32 = make_tiny(out / "taesd")
    tiny64 = copy.deepcopy(tiny32).to(torch.float64)
    enc_keys, dec_keys = write_original(tiny32, out / "taesd_original")

    cases = []

    def model_case(name, kind, folder, description):
        files = sorted(str(p.relative_to(out)) for p in (out / folder).rglob("*") if p.is_file())
        cases.append({"name": name, "kind": kind, "files": files, "tensors": {},
                      "sha256": {f: rc.sha256(out / f) for f in files if f.endswith(".safetensors")},
                      "description": description})

    model_case("vae_kl", "model", "vae_kl",
               {"config": plain(KL_CONFIG), "class": "AutoencoderKL",
                "tiling": {"tile_sample_min_size": kl32.tile_sample_min_size,
                           "tile_latent_min_size": kl32.tile_latent_min_size,
                           "tile_overlap_factor": kl32.tile_overlap_factor},
                "weights": "seeded N(0, 1/fan_in) conv/linear weights (refcommon.reinit), decoder.conv_out x 0.5"})
    model_case("taesd", "model", "taesd",
               {"config": plain(TINY_CONFIG), "class": "AutoencoderTiny",
                "weights": "seeded N(0, 1/fan_in) conv weights (refcommon.reinit), blocks' conv.4 x 0.5, decoder output bias + 0.33, encoder output conv x 10"})
    model_case("taesd_original", "model", "taesd_original",
               {"class": "AutoencoderTiny (madebyollin/taesd single-file layout)", "same_weights_as": "taesd",
                "encoder_keys_example": enc_keys[:3], "decoder_keys_example": dec_keys[:3],
                "renaming": "diffusers scripts/convert_tiny_autoencoder_to_diffusers.py: encoder key k -> "
                            "'encoder.layers.' + k; decoder key 'N.rest' -> 'decoder.layers.' + str(N - 1) + '.rest'"})

    def add(name, kind, model, doc, result):
        cases.append(write_case(out, name, kind, model, doc, result))

    dec_doc = "vae.enable_tiling(); vae.decode(latents).sample (latents already / scaling_factor; raw output, not clamped)"
    add("cases/kl_tiled_decode_b2_64x64", "vae_tiled_decode", "vae_kl", dec_doc,
        kl_decode_case(kl32, kl64, 2, 64, 64, seed=1))
    add("cases/kl_tiled_decode_96x128", "vae_tiled_decode", "vae_kl", dec_doc,
        kl_decode_case(kl32, kl64, 1, 96, 128, seed=2))
    add("cases/kl_untiled_decode_b2_64x64", "vae_decode", "vae_kl",
        "vae.disable_tiling(); vae.decode(latents).sample: the same latents as cases/kl_tiled_decode_b2_64x64",
        kl_decode_case(kl32, kl64, 2, 64, 64, seed=1, tiling=False))
    enc_doc = ("vae.enable_tiling(); d = vae.encode(image).latent_dist; mean = d.mean, logvar = d.logvar "
               "(clamped to [-30, 20]); image in [-1, 1]")
    add("cases/kl_tiled_encode_64x64", "vae_tiled_encode", "vae_kl", enc_doc,
        kl_encode_case(kl32, kl64, 1, 64, 64, seed=3))
    add("cases/kl_tiled_encode_128x96", "vae_tiled_encode", "vae_kl", enc_doc,
        kl_encode_case(kl32, kl64, 1, 128, 96, seed=4))
    add("cases/taesd_decode_b2_8x8", "taesd_decode", "taesd",
        "AutoencoderTiny.decode(latents).sample: raw latents (scaling_factor 1.0) -> image in [-1, 1]",
        tiny_decode_case(tiny32, tiny64, 2, 8, 8, seed=5))
    add("cases/taesd_decode_6x10", "taesd_decode", "taesd",
        "AutoencoderTiny.decode(latents).sample, non-square latents",
        tiny_decode_case(tiny32, tiny64, 1, 6, 10, seed=6))
    add("cases/taesd_encode_64x64", "taesd_encode", "taesd",
        "AutoencoderTiny.encode(image).latents: image in [-1, 1] -> raw latents",
        tiny_encode_case(tiny32, tiny64, 1, 64, 64, seed=7))
    add("cases/taesd_encode_48x80", "taesd_encode", "taesd",
        "AutoencoderTiny.encode(image).latents, non-square image (h x w)",
        tiny_encode_case(tiny32, tiny64, 1, 48, 80, seed=8))

    manifest = {
        "generator": "tests/reference/make_vae_cases.py",
        "reference": {
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
        },
        "tolerance_method": "each case ran twice in the reference: float32 and float64 (same inputs); "
                            "atol/rtol = max(1e-4, 10 x the measured fp32-vs-fp64 max error). "
                            "rel error = max|diff| / max|ref|.",
        "safetensors": "tensors in each case file are named as in its 'tensors' list; __metadata__ {'format':'pt'}",
        "cases": cases,
    }
    rc.write_json(out / "manifest.json", manifest)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")
    if total > 2 * 1024 * 1024:
        rc.fail(f"{out}: {total} bytes, over the 2 MB budget")


if __name__ == "__main__":
    main()
