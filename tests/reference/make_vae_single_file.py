#!/usr/bin/env python3
"""A single-file (original LDM key names) KL VAE and what diffusers makes of it, for libsd's
tests/test_separate_vae.cpp (LoadOptions::vae, `sd generate --vae FILE`).

Run by hand from the repository root, after tests/reference/make_vae_cases.py (which replaces
tests/data/vae/ entirely and writes the vae_kl/ model this script reads); never in CI:

    .venv-torch/bin/python tests/reference/make_vae_single_file.py

Reference stack (pinned; the script refuses another diffusers version): torch 2.11.0 (CPU),
diffusers 0.27.2, safetensors, numpy. Nothing is downloaded. Deterministic: one CPU thread, seeded
generators, torch deterministic algorithms, sorted JSON. It refuses a vae_kl/ whose weights differ
from the manifest's sha256, and adds to tests/data/vae/ (or --out DIR) without touching the rest:
  vae_kl_ldm/vae.safetensors   vae_kl's weights under the LDM names of a standalone VAE checkpoint
                               ("vae-ft-mse-840000-ema-pruned.safetensors" style: encoder.*, decoder.*,
                               quant_conv.*, post_quant_conv.*; the mid-block attention's q/k/v/proj_out
                               as [C, C, 1, 1] 1x1 convs), plus the EMA counters model_ema.decay and
                               model_ema.num_updates that such files carry and loaders ignore
  cases/kl_ldm_decode_12x20.*  diffusers' decode of latents through that file, converted by diffusers'
                               own diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint
  cases/kl_ldm_encode_24x40.*  the posterior mean and logvar of an image, same VAE
and their entries in manifest.json (earlier entries of the same names are replaced).

The LDM names are made by inverting diffusers' renaming (ldm_names() below). They are checked by
the converter itself: convert_ldm_vae_checkpoint(file, config) must give back vae_kl's state dict
exactly (same keys, equal values) and load into AutoencoderKL with strict=True.

Tolerances: as make_vae_cases.py, each case runs in float32 (the stored reference) and in float64
(a float64 copy of the converted VAE); atol/rtol = max(1e-4, 10 x the fp32-vs-fp64 max error).
"""
import copy
import json
import re

import refcommon as rc  # first: sets the offline/quiet environment before torch/diffusers load

import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from make_vae_cases import output_folder, write_case  # noqa: E402

MODEL = "vae_kl"
LDM_FILE = "vae_kl_ldm/vae.safetensors"

# diffusers AutoencoderKL module prefixes -> LDM ones. "{n}" is the decoder's up block count minus 1:
# LDM numbers its up path from the lowest resolution, diffusers in execution order.
ATTENTION_LEAVES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_name(key, num_up_blocks):
    """One diffusers AutoencoderKL key as the LDM VAE names it (the inverse of diffusers' converter)."""
    side, rest = key.split(".", 1)
    if side in ("quant_conv", "post_quant_conv"):
        return key
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)", rest)
    if m:
        kind, block, part, index, leaf = m.groups()
        block = int(block) if kind == "down" else num_up_blocks - 1 - int(block)
        if part == "resnets":
            return f"{side}.{kind}.{block}.block.{index}.{leaf.replace('conv_shortcut', 'nin_shortcut')}"
        return f"{side}.{kind}.{block}.{kind}sample.{leaf}"  # downsamplers.0.conv -> downsample.conv
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{side}.mid.block_{int(m.group(1)) + 1}.{m.group(2)}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest)
    if m:
        return f"{side}.mid.attn_1.{ATTENTION_LEAVES[m.group(1)]}.{m.group(2)}"
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest[len('conv_norm_out.'):]}"
    if rest.startswith(("conv_in.", "conv_out.")):
        return key
    rc.fail(f"no LDM name for AutoencoderKL key {key}")


def ldm_names(state_dict, num_up_blocks):
    out = {}
    for key, value in state_dict.items():
        name = ldm_name(key, num_up_blocks)
        assert name not in out, (key, name)
        value = value.detach().clone()
        # LDM's AttnBlock projects with 1x1 convolutions, diffusers' Attention with linears.
        if ".mid.attn_1." in name and name.endswith(".weight") and value.dim() == 2:
            value = value[:, :, None, None].contiguous()
        out[name] = value
    return out


def write_ldm_file(vae, config, path):
    ldm = ldm_names(vae.state_dict(), len(config["up_block_types"]))
    ema = {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(840000, dtype=torch.int32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**ldm, **ema}, str(path))

    # diffusers' own converter must map the file back onto AutoencoderKL exactly.
    back = convert_ldm_vae_checkpoint(load_file(str(path)), config)
    expected = vae.state_dict()
    if sorted(back) != sorted(expected):
        rc.fail(f"convert_ldm_vae_checkpoint keys differ: {sorted(set(back) ^ set(expected))[:5]}")
    for k, v in expected.items():
        if back[k].shape != v.shape or not torch.equal(back[k], v):
            rc.fail(f"convert_ldm_vae_checkpoint: {k} differs ({tuple(back[k].shape)} vs {tuple(v.shape)})")
    converted = AutoencoderKL(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    converted.load_state_dict(back, strict=True)
    return converted, sorted(ldm)


@torch.no_grad()
def decode_case(v32, v64, z):
    out32, out64 = v32.decode(z).sample, v64.decode(z.double()).sample
    # Plausible renaming mistakes: the mid-block attention's q and k exchanged, post_quant_conv dropped.
    swapped = copy.deepcopy(v32)
    attn = swapped.decoder.mid_block.attentions[0]
    attn.to_q, attn.to_k = attn.to_k, attn.to_q
    sens = {"decoder mid attention q/k exchanged": rc.error(swapped.decode(z).sample, out32)[0]}
    sens["no post_quant_conv"] = rc.error(v32.decoder(z), out32)[0]
    return {"latents": z, "image": out32}, rc.tolerance([(out32, out64)]), sens


@torch.no_grad()
def encode_case(v32, v64, x):
    d32, d64 = v32.encode(x).latent_dist, v64.encode(x.double()).latent_dist
    sens = {"no quant_conv (mean)": rc.error(v32.encoder(x)[:, :4], d32.mean)[0]}
    tol = rc.tolerance([(d32.mean, d64.mean), (d32.logvar, d64.logvar)])
    return {"image": x, "mean": d32.mean, "logvar": d32.logvar}, tol, sens


def main():
    out = output_folder(__doc__)  # with make_vae_cases.py's pinned versions

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model_entry = next(c for c in manifest["cases"] if c["name"] == MODEL)
    weights = f"{MODEL}/diffusion_pytorch_model.safetensors"
    if rc.sha256(out / weights) != model_entry["sha256"][weights]:
        rc.fail(f"{out / weights} is not the manifest's {MODEL}: rerun make_vae_cases.py first")
    vae = AutoencoderKL.from_pretrained(str(out / MODEL), local_files_only=True).eval()
    config = dict(vae.config)

    v32, ldm_keys = write_ldm_file(vae, config, out / LDM_FILE)
    v64 = copy.deepcopy(v32).to(torch.float64)

    mine = {"vae_kl_ldm"}
    entries = [{"name": "vae_kl_ldm", "kind": "model", "files": [LDM_FILE], "tensors": {},
                "sha256": {LDM_FILE: rc.sha256(out / LDM_FILE)},
                "generator": "tests/reference/make_vae_single_file.py",
                "description": {"class": "AutoencoderKL (single-file VAE checkpoint, original LDM key names)",
                                "same_weights_as": MODEL, "config": f"{MODEL}/config.json",
                                "keys_example": ldm_keys[:3] + [k for k in ldm_keys if ".mid.attn_1.q." in k],
                                "extra_keys_ignored": ["model_ema.decay", "model_ema.num_updates"],
                                "checked_with": "diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint "
                                                "(0.27.2) -> AutoencoderKL.load_state_dict(strict=True), every "
                                                "tensor equal to vae_kl's"}}]

    f = 2 ** (len(config["block_out_channels"]) - 1)
    g = torch.Generator("cpu").manual_seed(11)
    z = torch.randn(1, config["latent_channels"], 12, 20, generator=g)
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator("cpu").manual_seed(12)) * 2 - 1
    cases = [("cases/kl_ldm_decode_12x20", "vae_decode",
              "AutoencoderKL loaded from convert_ldm_vae_checkpoint(vae_kl_ldm/vae.safetensors); "
              "vae.decode(latents).sample, untiled (latents already / scaling_factor; raw output, not clamped)",
              decode_case(v32, v64, z)),
             ("cases/kl_ldm_encode_24x40", "vae_encode",
              "the same VAE; d = vae.encode(image).latent_dist: mean, logvar (clamped to [-30, 20]); "
              "image in [-1, 1], untiled", encode_case(v32, v64, x))]
    assert cases[0][3][0]["image"].shape == (1, 3, 12 * f, 20 * f)
    for name, kind, doc, (tensors, tol, sens) in cases:
        entries.append(write_case(out, name, kind, "vae_kl_ldm", doc, (tensors, tol, sens, {}),
                                  {"generator": "tests/reference/make_vae_single_file.py"}))
        mine.add(name)

    manifest["cases"] = [c for c in manifest["cases"] if c["name"] not in mine] + entries
    rc.write_json(manifest_path, manifest)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out / LDM_FILE} and {len(cases)} cases ({total} bytes in {out})")
    if total > 2 * 1024 * 1024:
        rc.fail(f"{out}: {total} bytes, over the 2 MB budget")


if __name__ == "__main__":
    main()
