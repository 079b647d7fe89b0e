#!/usr/bin/env python3
"""LoRA reference data for libsd's tests, made by diffusers + peft themselves.

Run by hand from the repository root (never in CI; the tests only read what this writes):

    .venv-torch/bin/python tests/reference/make_lora_cases.py [--golden ../shared/golden] [--out tests/data/lora]

It replaces tests/data/lora/ (or --out DIR) entirely; a few seconds on one CPU thread.

Reference stack (pinned; other versions are refused): diffusers 0.27.2, transformers 4.40.2,
peft 0.10.0 (diffusers' LoRA backend: `pip install peft==0.10.0`), torch 2.11.0 (CPU; other
versions only warn), safetensors. Nothing is downloaded (HF_HUB_OFFLINE). Deterministic: one CPU
thread, seeded generators, sorted JSON.

Model: the golden tiny SD 1.x pipeline ../shared/golden/pipelines/sd1_tiny, read in place.

LoRA files written (random, seeded; the same LoRA in several namings where the format allows):
  * lora_a_kohya.safetensors: kohya/A1111 keys with diffusers-style UNet names
    ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"), rank 4, alpha 2 (one alpha
    for every module: diffusers 0.27 maps a file's most common alpha correctly, per-module
    alpha_pattern names less reliably). Linear layers, 1x1 convolutions (proj_in/out,
    conv_shortcut; 4-D down/up) and 3x3 convolutions (LoCon: down [r, in, 3, 3], up [out, r, 1, 1]),
    UNet and text encoder.
  * lora_a_kohya_ldm.safetensors: the same tensors under LDM-style UNet names
    ("lora_unet_input_blocks_1_1_proj_in"), for the tiny config's layout (2 levels, 2 resnets per
    level). diffusers 0.27 has no mapping of these for non-SDXL UNets, so no diffusers output is
    recorded for it: the tests check it merges to the same weights as lora_a_kohya.
  * lora_b_peft.safetensors: diffusers/PEFT keys ("unet.<module>.lora_A.weight", lora_B,
    "text_encoder.<module>..."), rank 2, with per-module "<prefix>.<module>.alpha" = 3 keys.
    diffusers 0.27's load_lora_weights reads no alpha from a PEFT file, so the reference loads it
    through load_lora_into_unet / load_lora_into_text_encoder with those alphas as network_alphas.
  * lora_c_old.safetensors: older diffusers attention-processor names
    ("unet.<block>.attn1.processor.to_q_lora.down.weight", "<module>.lora.down.weight",
    "text_encoder.<layer>.self_attn.to_q_lora.down.weight", "<mlp>.lora_linear_layer.down.weight"),
    rank 3, no alpha (alpha = rank), loaded with load_lora_weights as a user does.

Cases (cases/<name>.safetensors + manifest.json): each LoRA loaded by diffusers, then
fuse_lora(lora_scale=scale) (two LoRAs at once: set_adapters([...], adapter_weights=[...]) then
fuse_lora()). Recorded: "text_embeddings" = text_encoder(ids of PROMPT)[0] [1, 77, 32] and
"unet_out" = unet(latents, timestep, encoder_hidden_states).sample [1, 4, 32, 32] for fixed inputs
(inputs.safetensors: latents, encoder_hidden_states; timestep in the manifest), plus the base model's
outputs ("base"). Each case is run again in float64 (the LoRA loaded in float32, the pipeline then
cast to float64 before fusing); atol/rtol = max(1e-4, 10 x the measured fp32-vs-fp64 max error)
(refcommon.tolerance), checked as max|x-ref| <= atol or max|x-ref| / max|ref| <= rtol.
The script also checks that diffusers' fused weights equal W + scale * alpha / rank * up @ down.
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refcommon  # noqa: E402  (first: sets the offline environment)
from refcommon import fail, save_tensors, tolerance, write_json  # noqa: E402

import torch  # noqa: E402
import diffusers  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

PROMPT = "a watercolor painting of a lighthouse"
TIMESTEP = 421

UNET_TARGETS = [  # (diffusers module, LDM name for the tiny layout)
    ("down_blocks.0.attentions.0.proj_in", "input_blocks.1.1.proj_in"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "input_blocks.1.1.transformer_blocks.0.attn1.to_q"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", "input_blocks.1.1.transformer_blocks.0.attn1.to_k"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v", "input_blocks.1.1.transformer_blocks.0.attn1.to_v"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
     "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", "input_blocks.1.1.transformer_blocks.0.attn2.to_k"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
     "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2", "input_blocks.1.1.transformer_blocks.0.ff.net.2"),
    ("down_blocks.0.attentions.1.proj_out", "input_blocks.2.1.proj_out"),
    ("down_blocks.0.resnets.0.conv1", "input_blocks.1.0.in_layers.2"),
    ("down_blocks.0.resnets.1.time_emb_proj", "input_blocks.2.0.emb_layers.1"),
    ("down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
    ("down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection"),
    ("mid_block.attentions.0.transformer_blocks.0.attn1.to_v", "middle_block.1.transformer_blocks.0.attn1.to_v"),
    ("mid_block.resnets.1.conv2", "middle_block.2.out_layers.3"),
    ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv"),
    ("up_blocks.1.resnets.0.conv1", "output_blocks.3.0.in_layers.2"),
    ("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0",
     "output_blocks.5.1.transformer_blocks.0.attn2.to_out.0"),
]
# diffusers 0.27 requires a text-encoder LoRA to have every layer's out_proj (and fc1/fc2 once any
# mlp is there), as trained LoRAs do: every linear layer of the text encoder.
TEXT_TARGETS = [f"text_model.encoder.layers.{i}.{m}" for i in range(3)
                for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                          "mlp.fc1", "mlp.fc2")]


def random_lora(module, rank, gen):
    """(down, up) for a Linear or Conv2d: down [r, in(, kh, kw)], up [out, r(, 1, 1)], scaled so the
    update is of the order of the weight itself."""
    w = module.weight
    if w.dim() == 2:
        down = torch.randn(rank, w.shape[1], generator=gen) / w.shape[1] ** 0.5
        up = torch.randn(w.shape[0], rank, generator=gen) / rank ** 0.5
    else:
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        down = torch.randn(rank, w.shape[1], w.shape[2], w.shape[3], generator=gen) / fan_in ** 0.5
        up = torch.randn(w.shape[0], rank, 1, 1, generator=gen) / rank ** 0.5
    return down.contiguous(), up.contiguous()


def kohya(name):
    return name.replace(".", "_")


OLD_ATTENTION = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora", "to_out.0": "to_out_lora"}
OLD_TEXT = {"q_proj": "to_q_lora", "k_proj": "to_k_lora", "v_proj": "to_v_lora", "out_proj": "to_out_lora"}


def old_unet_name(module):
    for new, old in OLD_ATTENTION.items():
        head, sep, tail = module.rpartition("." + new)
        if sep and tail == "" and (".attn1" in head or ".attn2" in head):
            return head + ".processor." + old
    return module + ".lora"


def old_text_name(module):
    for new, old in OLD_TEXT.items():
        if module.endswith(".self_attn." + new):
            return module[: -len(new)] + old
    return module + ".lora_linear_layer"


def make_loras(pipe, out):
    unet, te = pipe.unet, pipe.text_encoder
    files = {}

    def draws(seed, rank):
        gen = torch.Generator("cpu").manual_seed(seed)
        u = {m: random_lora(unet.get_submodule(m), rank, gen) for m, _ in UNET_TARGETS}
        t = {m: random_lora(te.get_submodule(m), rank, gen) for m in TEXT_TARGETS}
        return u, t

    # A: kohya, rank 4, alpha 2.
    ua, ta = draws(1, 4)
    a, a_ldm = {}, {}
    for (m, ldm) in UNET_TARGETS:
        for d, name in ((a, kohya(m)), (a_ldm, kohya(ldm))):
            d[f"lora_unet_{name}.lora_down.weight"] = ua[m][0]
            d[f"lora_unet_{name}.lora_up.weight"] = ua[m][1]
            d[f"lora_unet_{name}.alpha"] = torch.tensor(2.0)
    for m in TEXT_TARGETS:
        for d in (a, a_ldm):
            d[f"lora_te_{kohya(m)}.lora_down.weight"] = ta[m][0]
            d[f"lora_te_{kohya(m)}.lora_up.weight"] = ta[m][1]
            d[f"lora_te_{kohya(m)}.alpha"] = torch.tensor(2.0)
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "2.0"}
    save_file(a, str(out / "lora_a_kohya.safetensors"), metadata=meta)
    save_file(a_ldm, str(out / "lora_a_kohya_ldm.safetensors"), metadata=meta)
    files["a"] = {"file": "lora_a_kohya.safetensors", "rank": 4, "alpha": 2.0, "unet": ua, "text": ta}

    # B: PEFT, rank 2, alpha 3 as keys.
    ub, tb = draws(2, 2)
    b = {}
    for m, _ in UNET_TARGETS:
        b[f"unet.{m}.lora_A.weight"], b[f"unet.{m}.lora_B.weight"] = ub[m]
        b[f"unet.{m}.alpha"] = torch.tensor(3.0)
    for m in TEXT_TARGETS:
        b[f"text_encoder.{m}.lora_A.weight"], b[f"text_encoder.{m}.lora_B.weight"] = tb[m]
        b[f"text_encoder.{m}.alpha"] = torch.tensor(3.0)
    save_file(b, str(out / "lora_b_peft.safetensors"))
    files["b"] = {"file": "lora_b_peft.safetensors", "rank": 2, "alpha": 3.0, "unet": ub, "text": tb}

    # C: old diffusers names, rank 3, no alpha.
    uc, tc = draws(3, 3)
    c = {}
    for m, _ in UNET_TARGETS:
        c[f"unet.{old_unet_name(m)}.down.weight"], c[f"unet.{old_unet_name(m)}.up.weight"] = uc[m]
    for m in TEXT_TARGETS:
        c[f"text_encoder.{old_text_name(m)}.down.weight"], c[f"text_encoder.{old_text_name(m)}.up.weight"] = tc[m]
    save_file(c, str(out / "lora_c_old.safetensors"))
    files["c"] = {"file": "lora_c_old.safetensors", "rank": 3, "alpha": 3.0, "unet": uc, "text": tc}
    return files


def load_into(pipe, lora, name, out):
    path = out / lora["file"]
    if name == "b":
        from safetensors.torch import load_file
        sd = load_file(str(path))
        alphas = {k: v.item() for k, v in sd.items() if k.endswith(".alpha")}
        sd = {k: v for k, v in sd.items() if not k.endswith(".alpha")}
        unet_sd = {k: v for k, v in sd.items() if k.startswith("unet.")}
        te_sd = {k: v for k, v in sd.items() if k.startswith("text_encoder.")}
        pipe.load_lora_into_unet(unet_sd, network_alphas={k: v for k, v in alphas.items() if k.startswith("unet.")},
                                 unet=pipe.unet, adapter_name=name, _pipeline=pipe)
        pipe.load_lora_into_text_encoder(
            te_sd, network_alphas={k: v for k, v in alphas.items() if k.startswith("text_encoder.")},
            text_encoder=pipe.text_encoder, prefix="text_encoder", adapter_name=name, _pipeline=pipe)
    else:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)


def expected_weight(base, loras):
    """W + sum scale * alpha / rank * up @ down, in float64."""
    w = base.to(torch.float64).clone()
    for lora, scale, (down, up) in loras:
        delta = up.flatten(1).to(torch.float64) @ down.flatten(1).to(torch.float64)
        w += scale * lora["alpha"] / lora["rank"] * delta.reshape(w.shape)
    return w


def run_case(folder, loras, names, scales, inputs, ids, dtype, out, base_weights):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        str(folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        local_files_only=True)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval()
    for n in names:
        load_into(pipe, loras[n], n, out)
    pipe = pipe.to(dtype=dtype)
    if dtype == torch.float64:
        refcommon.float64_text_encoder(pipe)
    if names:
        if len(names) > 1:
            pipe.set_adapters(names, adapter_weights=scales)
            pipe.fuse_lora(lora_scale=1.0)
        else:
            pipe.fuse_lora(lora_scale=scales[0])
        # diffusers' fused weights against the formula.
        for component, targets, key in ((pipe.unet, [m for m, _ in UNET_TARGETS], "unet"),
                                        (pipe.text_encoder, TEXT_TARGETS, "text")):
            for m in targets:
                mod = component.get_submodule(m)
                w = (mod.base_layer if hasattr(mod, "base_layer") else mod).weight
                want = expected_weight(base_weights[key][m],
                                       [(loras[n], s, loras[n][key][m]) for n, s in zip(names, scales)])
                err = (w.to(torch.float64) - want).abs().max().item()
                if err > (1e-5 if dtype == torch.float32 else 1e-12) * max(1.0, want.abs().max().item()):
                    fail(f"diffusers' fused {key} weight {m} differs from the formula by {err}")
    with torch.no_grad():
        text = pipe.text_encoder(ids)[0]
        unet_out = pipe.unet(inputs["latents"].to(dtype), TIMESTEP,
                             encoder_hidden_states=inputs["encoder_hidden_states"].to(dtype)).sample
    return {"text_embeddings": text, "unet_out": unet_out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default="../shared/golden")
    ap.add_argument("--out", default="tests/data/lora")
    args = ap.parse_args()
    refcommon.check_versions({diffusers: "0.27.2", transformers: "4.40.2", peft: "0.10.0"}, torch_tested="2.11")
    refcommon.deterministic()
    folder = Path(args.golden) / "pipelines" / "sd1_tiny"
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "cases").mkdir(parents=True)

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        str(folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        local_files_only=True)
    loras = make_loras(pipe, out)
    base_weights = {"unet": {m: pipe.unet.get_submodule(m).weight.detach().clone() for m, _ in UNET_TARGETS},
                    "text": {m: pipe.text_encoder.get_submodule(m).weight.detach().clone() for m in TEXT_TARGETS}}
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    gen = torch.Generator("cpu").manual_seed(7)
    inputs = {"latents": torch.randn(1, 4, 32, 32, generator=gen),
              "encoder_hidden_states": torch.randn(1, 77, 32, generator=gen)}
    save_tensors(out / "inputs.safetensors", inputs)

    cases = [("base", [], []), ("a_scale1", ["a"], [1.0]), ("a_scale0.6", ["a"], [0.6]),
             ("b_scale1", ["b"], [1.0]), ("b_scale-0.7", ["b"], [-0.7]), ("c_scale0.8", ["c"], [0.8]),
             ("a0.7_b-0.5", ["a", "b"], [0.7, -0.5])]
    manifest = {"prompt": PROMPT, "timestep": TIMESTEP, "files": {n: {k: v for k, v in l.items()
                                                                      if k in ("file", "rank", "alpha")}
                                                                  for n, l in loras.items()},
                "ldm_named_twin": {"lora_a_kohya_ldm.safetensors": "lora_a_kohya.safetensors"},
                "check": refcommon.CHECK, "cases": []}
    for name, names, scales in cases:
        r32 = run_case(folder, loras, names, scales, inputs, ids, torch.float32, out, base_weights)
        r64 = run_case(folder, loras, names, scales, inputs, ids, torch.float64, out, base_weights)
        save_tensors(out / "cases" / f"{name}.safetensors", r32)
        manifest["cases"].append({
            "name": name, "loras": [{"file": loras[n]["file"], "scale": s} for n, s in zip(names, scales)],
            "tolerance": {k: tolerance([(r32[k], r64[k])]) for k in r32},
        })
        print(name, {k: round(v["atol"], 8) for k, v in manifest["cases"][-1]["tolerance"].items()})
    write_json(out / "manifest.json", manifest)


if __name__ == "__main__":
    main()
