#!/usr/bin/env python3
"""Tiny SD 2.x-style reference data for libsd's tests/test_sd2_parity.cpp, made by diffusers itself.

Run by hand from the repository root (never in CI; the test only reads what this writes):

    .venv-torch/bin/python tests/reference/make_sd2_tiny.py

Reference stack (pinned; the script refuses other diffusers/transformers versions): torch 2.11.0
(CPU), diffusers 0.27.2, transformers 4.40.2, safetensors, numpy -- the venv of
bench/compare/requirements.txt. Nothing is downloaded: every model is built from its config with
seeded random weights, and the tokenizer's vocab/merges are the first MERGES merges of CLIP's BPE
taken from ../shared/golden/tokenizer (or --clip-tokenizer DIR). Deterministic: one CPU thread,
seeded generators, torch deterministic algorithms, sorted JSON; the same versions write the same
bytes. It replaces tests/data/sd2_tiny/ (or --out DIR) entirely.

What SD 2.x has and SD 1.x lacks, all exercised here:
  * UNet: use_linear_projection (Linear proj_in/proj_out), attention_head_dim as a per-block list
    (= heads per block; the mid block takes the last entry, the up blocks the reversed list),
    upcast_attention, cross_attention_dim = the text encoder's hidden size;
  * text encoder: OpenCLIP-style CLIP with hidden_act "gelu" (exact, erf) instead of quick_gelu;
  * tokenizer: pads with "!" (pad_token "!", id 0), which also makes "!" in a prompt a special token;
  * scheduler: DDIMScheduler config of SD 2.1 (768-v) with prediction_type "v_prediction" and no
    timestep_spacing (DDIM's default "leading"; Euler made from it takes its own "linspace").

Size: CLIP's full 49,408-token vocabulary (1.4 MB of vocab/merges plus a 49408 x hidden embedding)
would not fit the data budget, so the tokenizer keeps CLIP's 512 byte tokens, its first MERGES
merges and the two special tokens, in CLIP's own order (kept tokens have CLIP's ids; the specials
move to the end). transformers' CLIPTokenizer reads these files as it reads the full ones.

Layout (names in manifest.json are relative to the output folder):
  pipeline/                 diffusers StableDiffusionPipeline folder (model_index.json, unet/, vae/,
                            text_encoder/, tokenizer/, scheduler/), loaded back by diffusers to run
                            every case below
  modules/unet_b2.*         UNet2DConditionModel: sample, timestep (per sample), encoder_hidden_states
                            -> out_sample
  modules/clip_text_encoder.*  CLIPTextModel: input_ids -> last_hidden_state, pooler_output,
                            hidden_states.*, penultimate_hidden_state(_final_ln)
  e2e/<case>.json/.safetensors  whole pipeline runs, every step's latents
  manifest.json             the cases with their tolerances

Tolerances: each case runs in float32 (the stored reference) and again in float64 on the same
inputs (the float64 e2e runs take the float32 runs' initial noise as latents); atol/rtol =
max(1e-4, 10 x the measured fp32-vs-fp64 max error), rel error = max|diff| / max|ref|.

Helpers shared with tests/reference/make_img2img_inpaint.py (JSON/safetensors writing, the tolerance,
the seeded reinit) live in tests/reference/refcommon.py.
"""
import argparse
import json
import shutil
from pathlib import Path

import refcommon  # first: sets the offline environment before torch/diffusers/transformers load
from refcommon import (
    error,
    fail,
    load_pipeline as load_pipeline_of,
    reinit,
    save_tensors,
    sha256,
    tensor_info,
    to_stored,
    tolerance,
    write_json,
)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
import safetensors  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402
from transformers.models.clip.tokenization_clip import bytes_to_unicode  # noqa: E402

PINNED = {"diffusers": "0.27.2", "transformers": "4.40.2"}
TORCH_TESTED = "2.11."
MERGES = 500  # BPE merges kept (vocab = 512 byte tokens + MERGES + 2 specials)
HIDDEN = 32    # text encoder hidden size = UNet cross_attention_dim

TEXT_CONFIG = dict(  # SD 2.x text_encoder/config.json, shrunk (SD 2.1: 1024 hidden, 23 layers, 16 heads)
    architectures=["CLIPTextModel"],
    attention_dropout=0.0,
    bos_token_id=0,
    dropout=0.0,
    eos_token_id=2,  # as SD 2.1's config: the legacy value, pooled output at argmax(input_ids)
    hidden_act="gelu",
    hidden_size=HIDDEN,
    initializer_factor=1.0,
    initializer_range=0.02,
    intermediate_size=64,
    layer_norm_eps=1e-05,
    max_position_embeddings=77,
    model_type="clip_text_model",
    num_attention_heads=2,
    num_hidden_layers=2,
    pad_token_id=1,
    projection_dim=32,
    torch_dtype="float32",
    transformers_version=transformers.__version__,
    vocab_size=512 + MERGES + 2,
)

UNET_CONFIG = dict(  # SD 2.1 (768-v) unet/config.json, shrunk
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(8, 16, 16),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(2, 4, 8),  # heads per block (SD 2.1: [5, 10, 20, 20]); mid: 8, up: reversed
    cross_attention_dim=HIDDEN,
    use_linear_projection=True,
    upcast_attention=True,
    norm_num_groups=4,
    norm_eps=1e-05,
    flip_sin_to_cos=True,
    freq_shift=0,
    act_fn="silu",
    downsample_padding=1,
    center_input_sample=False,
    dual_cross_attention=False,
    only_cross_attention=False,
)

VAE_CONFIG = dict(  # SD 2.x uses SD 1.x's VAE: 4 levels (factor 8), shrunk
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(8, 8, 8, 8),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=1,
    norm_num_groups=4,
    act_fn="silu",
    sample_size=64,
    scaling_factor=0.18215,
)

SCHEDULER_CONFIG = {  # stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json, as published
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

SPECIAL = {"content": None, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def special(content, added_token_type=False):
    d = dict(SPECIAL, content=content)
    return dict({"__type": "AddedToken"}, **d) if added_token_type else d


TOKENIZER_CONFIG = {  # SD 2.x tokenizer/tokenizer_config.json (pad_token "!")
    "add_prefix_space": False,
    "bos_token": special("<|startoftext|>", True),
    "do_lower_case": True,
    "eos_token": special("<|endoftext|>", True),
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "!",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": special("<|endoftext|>", True),
}
SPECIAL_TOKENS_MAP = {
    "bos_token": special("<|startoftext|>"),
    "eos_token": special("<|endoftext|>"),
    "pad_token": "!",
    "unk_token": special("<|endoftext|>"),
}

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": diffusers.__version__,
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# The end-to-end cases: v-prediction, classifier-free guidance, seeded noise.
E2E_CASES = [
    dict(
        name="ddim_v_cfg7.5_neg",
        scheduler="ddim",
        scheduler_class=DDIMScheduler,
        prompt="a photo of an astronaut riding a horse on mars",
        negative_prompt="blurry, low quality",
        guidance_scale=7.5,
        steps=8,
        height=64,
        width=64,
        generator_seed=2024,
        eta=0.0,
    ),
    dict(
        name="euler_v_cfg7.5",
        scheduler="euler",
        scheduler_class=EulerDiscreteScheduler,
        # "!" is SD 2.x's pad token, so in a prompt it is a special token (id 0, not "!</w>").
        prompt="a red cube on a blue sphere!",
        negative_prompt=None,
        guidance_scale=7.5,
        steps=8,
        height=64,
        width=64,
        generator_seed=7,
        eta=None,
    ),
]

TEXT_PROMPTS = [
    "wow!! a cat, a dog! and <|endoftext|> a fox",  # "!" and "<|endoftext|>" are special tokens here
    "",  # BOS, EOS, then 75 x "!" (id 0)
]

TENSORS_DOC = {
    "input_ids": "tokenizer(prompt, padding='max_length', max_length=77, truncation=True).input_ids",
    "negative_input_ids": "the same for negative_prompt ('' when None) - CFG only",
    "initial_latents": "latents before the loop (randn from the generator x init_noise_sigma)",
    "timesteps": "t passed to the UNet at each step (int64 for DDIM, float32 for Euler, as diffusers has them)",
    "unet_input_per_step": "latent_model_input after scale_model_input (CFG: cat([latents, latents]))",
    "unet_output_per_step": "raw UNet output, a v-prediction (CFG: [uncond, cond] halves); "
                            "its inputs: unet_input_per_step[i], timesteps[i], cat([negative_prompt_embeds, prompt_embeds])",
    "latents_per_step": "latents after scheduler.step at each step (callback_on_step_end)",
    "prompt_embeds": "text_encoder(input_ids).last_hidden_state",
    "negative_prompt_embeds": "the same for negative_input_ids - CFG only",
    "image": "pipeline output, output_type='np': (vae.decode(latents / scaling_factor) / 2 + 0.5).clamp(0, 1), NHWC",
    "image_uint8": "(image * 255).round() as uint8, HWC",
}


# --------------------------------------------------------------------------------------------------
# the pipeline folder

def write_tokenizer(src, dst):
    vocab_src = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
    merges_src = (src / "merges.txt").read_text(encoding="utf-8").strip().split("\n")
    if not merges_src[0].startswith("#version") or len(merges_src) < MERGES + 1:
        fail(f"{src / 'merges.txt'}: not CLIP's merges file")
    byte_tokens = list(bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens]
    tokens += ["".join(line.split()) for line in merges_src[1:MERGES + 1]]
    # CLIP's vocabulary is built exactly this way: the kept tokens keep their ids.
    for i, t in enumerate(tokens):
        if vocab_src.get(t) != i:
            fail(f"{src / 'vocab.json'}: token {t!r} has id {vocab_src.get(t)}, expected {i} (not CLIP's vocab?)")
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                    encoding="utf-8")
    (dst / "merges.txt").write_text("\n".join(merges_src[:MERGES + 1]) + "\n", encoding="utf-8")
    write_json(dst / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(dst / "special_tokens_map.json", SPECIAL_TOKENS_MAP)


def write_pipeline(folder, clip_tokenizer):
    write_tokenizer(clip_tokenizer, folder / "tokenizer")

    text_config = {k: v for k, v in TEXT_CONFIG.items()}
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config)).eval()
    reinit(text_encoder, seed=101)
    write_json(folder / "text_encoder" / "config.json", text_config)
    save_tensors(folder / "text_encoder" / "model.safetensors", text_encoder.state_dict())

    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    reinit(unet, seed=202)
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)

    vae = AutoencoderKL(**VAE_CONFIG).eval()
    # A gentler output layer keeps most decoded pixels inside [-1, 1], where clamping hides nothing.
    reinit(vae, seed=303, out_gain={"decoder.conv_out.weight": 0.5, "decoder.conv_out.bias": 0.5})
    vae.save_pretrained(str(folder / "vae"), safe_serialization=True)

    write_json(folder / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    write_json(folder / "model_index.json", MODEL_INDEX)


def check_loaded(pipe):
    """The folder, as diffusers loads it, really is SD 2.x-like."""
    u, t = pipe.unet.config, pipe.text_encoder.config
    assert u.use_linear_projection and u.upcast_attention, u
    assert list(u.attention_head_dim) == [2, 4, 8], u.attention_head_dim
    assert u.cross_attention_dim == t.hidden_size
    assert isinstance(pipe.unet.down_blocks[0].attentions[0].proj_in, torch.nn.Linear)
    assert pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == 2
    assert pipe.unet.mid_block.attentions[0].transformer_blocks[0].attn1.heads == 8
    assert pipe.unet.up_blocks[2].attentions[0].transformer_blocks[0].attn1.heads == 2
    assert t.hidden_act == "gelu"
    assert pipe.tokenizer.pad_token == "!" and pipe.tokenizer.pad_token_id == 0
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae_scale_factor == 8


# --------------------------------------------------------------------------------------------------
# module cases

@torch.no_grad()
def unet_case(p32, p64):
    g = torch.Generator("cpu").manual_seed(11)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([999, 17], dtype=torch.int64)
    context = torch.randn(2, 77, HIDDEN, generator=g)
    out32 = p32.unet(sample, timestep, encoder_hidden_states=context).sample
    out64 = p64.unet(sample.double(), timestep, encoder_hidden_states=context.double()).sample
    tensors = {"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "out_sample": out32}
    tol = tolerance([(out32, out64)])

    # The data must tell SD 2.x from SD 1.x: the same weights with other head counts.
    sens = {}
    for label, heads in (("attention_head_dim 8 (SD 1.x style int)", 8), ("attention_head_dim [8, 4, 2]", (8, 4, 2))):
        other = UNet2DConditionModel(**dict(UNET_CONFIG, attention_head_dim=heads)).eval()
        other.load_state_dict(p32.unet.state_dict())
        sens[label] = error(other(sample, timestep, encoder_hidden_states=context).sample, out32)[0]
    return tensors, tol, sens


@torch.no_grad()
def text_case(p32, p64):
    ids = p32.tokenizer(TEXT_PROMPTS, padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
    o32 = p32.text_encoder(ids, output_hidden_states=True)
    o64 = p64.text_encoder(ids, output_hidden_states=True)

    def outputs(o, model):
        d = {"last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output}
        for i, h in enumerate(o.hidden_states):
            d[f"hidden_states.{i}"] = h
        d["penultimate_hidden_state"] = o.hidden_states[-2].clone()
        # What diffusers' clip_skip=1 gives: the penultimate state through the final LayerNorm.
        d["penultimate_hidden_state_final_ln"] = model.text_model.final_layer_norm(o.hidden_states[-2])
        return d

    d32, d64 = outputs(o32, p32.text_encoder), outputs(o64, p64.text_encoder)
    tol = tolerance([(d32[k], d64[k]) for k in d32])

    other = CLIPTextModel(CLIPTextConfig(**dict(TEXT_CONFIG, hidden_act="quick_gelu"))).eval()
    other.load_state_dict(p32.text_encoder.state_dict())
    sens = {"hidden_act quick_gelu (SD 1.x)": error(other(ids).last_hidden_state, d32["last_hidden_state"])[0]}
    return dict({"input_ids": ids}, **d32), tol, sens


# --------------------------------------------------------------------------------------------------
# end-to-end cases

@torch.no_grad()
def run_e2e(pipe, case, noise=None, prediction_type=None):
    """One StableDiffusionPipeline call; noise=None: seeded from case['generator_seed']."""
    config = dict(pipe.folder_scheduler_config)
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    scheduler = case["scheduler_class"].from_config(config)
    pipe.scheduler = scheduler
    rec = {"te_ids": [], "te_out": [], "unet_in": [], "unet_out": [], "latents": [], "initial": []}

    def te_hook(module, args, kwargs, output):
        rec["te_ids"].append((args[0] if args else kwargs["input_ids"]).clone())
        rec["te_out"].append(output[0].clone())

    def unet_hook(module, args, kwargs, output):
        rec["unet_in"].append(args[0].clone())
        rec["unet_out"].append(output[0].clone())

    def on_step(p, i, t, kwargs):
        rec["latents"].append(kwargs["latents"].clone())
        return kwargs

    prepare = pipe.prepare_latents

    def prepare_latents(*args, **kwargs):
        out = prepare(*args, **kwargs)
        rec["initial"].append(out.clone())
        return out

    hooks = [pipe.text_encoder.register_forward_hook(te_hook, with_kwargs=True),
             pipe.unet.register_forward_hook(unet_hook, with_kwargs=True)]
    pipe.prepare_latents = prepare_latents
    try:
        kwargs = dict(prompt=case["prompt"], negative_prompt=case["negative_prompt"],
                      guidance_scale=case["guidance_scale"], num_inference_steps=case["steps"],
                      height=case["height"], width=case["width"], output_type="np",
                      callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
        if case["eta"] is not None:
            kwargs["eta"] = case["eta"]
        if noise is None:
            kwargs["generator"] = torch.Generator("cpu").manual_seed(case["generator_seed"])
        else:
            kwargs["latents"] = noise.to(pipe.unet.dtype)
        out = pipe(**kwargs)
    finally:
        for h in hooks:
            h.remove()
        del pipe.prepare_latents
    cfg = case["guidance_scale"] > 1
    assert len(rec["te_out"]) == (2 if cfg else 1) and len(rec["initial"]) == 1
    tensors = {
        "input_ids": rec["te_ids"][0],
        "initial_latents": rec["initial"][0],
        "timesteps": scheduler.timesteps.clone(),
        "unet_input_per_step": torch.stack(rec["unet_in"]),
        "unet_output_per_step": torch.stack(rec["unet_out"]),
        "latents_per_step": torch.stack(rec["latents"]),
        "prompt_embeds": rec["te_out"][0],
        "image": torch.from_numpy(out.images.copy()),
    }
    if cfg:
        tensors["negative_input_ids"] = rec["te_ids"][1]
        tensors["negative_prompt_embeds"] = rec["te_out"][1]
    config = dict(scheduler.config)
    if "_use_default_values" in config:  # a set's order in diffusers: sorted, for stable output
        config["_use_default_values"] = sorted(config["_use_default_values"])
    return tensors, config, float(scheduler.init_noise_sigma)


def e2e_case(p32, p64, case):
    t32, sched_config, init_sigma = run_e2e(p32, case)
    # diffusers drew the noise from torch.Generator("cpu").manual_seed(seed) in float32:
    noise = torch.randn(1, 4, case["height"] // 8, case["width"] // 8,
                        generator=torch.Generator("cpu").manual_seed(case["generator_seed"]))
    assert torch.equal(t32["initial_latents"], noise * init_sigma), "initial noise is not the seeded randn"
    t64, _, _ = run_e2e(p64, case, noise=noise.double())
    assert torch.equal(t32["timesteps"], t64["timesteps"])
    assert torch.equal(t32["input_ids"], t64["input_ids"])

    steps = t32["latents_per_step"].shape[0]
    pairs = [(t32["initial_latents"], t64["initial_latents"])]
    pairs += [(t32["latents_per_step"][i], t64["latents_per_step"][i]) for i in range(steps)]
    pairs += [(t32[k], t64[k]) for k in ("prompt_embeds", "negative_prompt_embeds") if k in t32]
    tol = tolerance(pairs)
    tol_image = tolerance([(t32["image"], t64["image"])])
    # The raw UNet outputs of each step (the float64 run's inputs drift from the float32 run's, so
    # this bounds the module error on the trajectory from above).
    tol_unet = tolerance([(t32["unet_output_per_step"][i], t64["unet_output_per_step"][i]) for i in range(steps)])
    u32 = (t32["image"][0] * 255).round().to(torch.uint8)
    u64 = (t64["image"][0] * 255).round().to(torch.uint8)
    uint8_diff = int((u32.int() - u64.int()).abs().max())
    t32["image_uint8"] = u32

    # Sanity: the prediction type matters (the same run read as epsilon ends elsewhere).
    t_eps, _, _ = run_e2e(p32, case, prediction_type="epsilon")
    sens = {"prediction_type epsilon": error(t_eps["latents_per_step"][-1], t32["latents_per_step"][-1])[0]}
    image = t32["image"]
    stats = {
        "image_fraction_clamped": float(((image <= 0) | (image >= 1)).float().mean()),
        "image_mean": float(image.mean()),
        "image_std": float(image.std()),
        "final_latents_std": float(t32["latents_per_step"][-1].std()),
    }
    return t32, sched_config, tol, tol_image, tol_unet, uint8_diff, sens, stats


# --------------------------------------------------------------------------------------------------

def main():
    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "sd2_tiny")
    ap.add_argument("--clip-tokenizer", type=Path, default=repo.parent / "shared" / "golden" / "tokenizer",
                    help="folder with CLIP's vocab.json and merges.txt")
    args = ap.parse_args()

    refcommon.check_versions({diffusers: PINNED["diffusers"], transformers: PINNED["transformers"]}, TORCH_TESTED)
    if not (args.clip_tokenizer / "vocab.json").exists():
        fail(f"{args.clip_tokenizer}: no vocab.json (pass --clip-tokenizer)")

    refcommon.deterministic()

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    folder = out / "pipeline"
    write_pipeline(folder, args.clip_tokenizer)
    p32 = load_pipeline_of(StableDiffusionPipeline, folder, torch.float32)
    p64 = load_pipeline_of(StableDiffusionPipeline, folder, torch.float64)
    check_loaded(p32)

    cases = []
    pipeline_files = sorted(str(p.relative_to(out)) for p in folder.rglob("*") if p.is_file())
    cases.append({
        "name": "pipeline",
        "kind": "pipeline",
        "files": pipeline_files,
        "tensors": {},
        "sha256": {f: sha256(out / f) for f in pipeline_files if f.endswith(".safetensors")},
        "description": {
            "unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in UNET_CONFIG.items()},
            "vae": {k: (list(v) if isinstance(v, tuple) else v) for k, v in VAE_CONFIG.items()},
            "text_encoder": {k: TEXT_CONFIG[k] for k in ("hidden_act", "hidden_size", "intermediate_size",
                                                         "num_attention_heads", "num_hidden_layers", "vocab_size")},
            "tokenizer": f"CLIP's 512 byte tokens + its first {MERGES} merges + <|startoftext|>, <|endoftext|>;"
                         " pad_token '!' (id 0)",
            "scheduler": SCHEDULER_CONFIG,
            "weights": "seeded N(0, 1/fan_in) linear/conv weights (see reinit() in the script), float32",
        },
    })

    def module_case(name, kind, component, tensors, tol, sens, doc, extra=None):
        path = out / (name + ".safetensors")
        save_tensors(path, tensors)
        meta = {"name": name, "kind": kind, "component": component, "pipeline": "pipeline", "doc": doc,
                "tolerance": tol, "sensitivity_max_abs": sens, "tensors": tensor_info(
                    {k: to_stored(v) for k, v in tensors.items()})}
        meta.update(extra or {})
        write_json(out / (name + ".json"), meta)
        cases.append({"name": name, "kind": kind, "component": component,
                      "files": [name + ".safetensors", name + ".json"], "tensors": meta["tensors"],
                      "sha256": {name + ".safetensors": sha256(path)}, "tolerance": tol,
                      "sensitivity_max_abs": sens})
        print(f"{name}: atol {tol['atol']:.3g} rtol {tol['rtol']:.3g} "
              f"(fp32 vs fp64 {tol['measured_fp32_vs_fp64_max_abs']:.3g} abs, "
              f"{tol['measured_fp32_vs_fp64_max_rel']:.3g} rel); sensitivity {sens}")

    tensors, tol, sens = unet_case(p32, p64)
    module_case("modules/unet_b2", "unet", "unet", tensors, tol, sens,
                "unet(sample, timestep, encoder_hidden_states=...).sample; timestep per sample (int64)")
    tensors, tol, sens = text_case(p32, p64)
    module_case("modules/clip_text_encoder", "clip_text_encoder", "text_encoder", tensors, tol, sens,
                f"text_encoder(input_ids, output_hidden_states=True) for the prompts {TEXT_PROMPTS}; "
                "penultimate_hidden_state = hidden_states[-2], *_final_ln = final_layer_norm of it (clip_skip 1)",
                extra={"prompts": TEXT_PROMPTS})

    for case in E2E_CASES:
        name = "e2e/" + case["name"]
        t32, sched_config, tol, tol_image, tol_unet, uint8_diff, sens, stats = e2e_case(p32, p64, case)
        path = out / (name + ".safetensors")
        save_tensors(path, t32)
        info = tensor_info({k: to_stored(v) for k, v in t32.items()})
        settings = {k: v for k, v in case.items() if k != "scheduler_class"}
        tol_uint8 = max(1, uint8_diff)
        meta = dict(settings, pipeline="pipeline", scheduler_class=case["scheduler_class"].__name__,
                    scheduler_config=sched_config,
                    call=f"{case['scheduler_class'].__name__}.from_config(pipe.scheduler.config); "
                         "StableDiffusionPipeline(..., safety_checker=None, feature_extractor=None)(prompt, "
                         "negative_prompt, guidance_scale, num_inference_steps, height, width[, eta], "
                         "generator=torch.Generator('cpu').manual_seed(generator_seed), output_type='np', "
                         "callback_on_step_end=...)",
                    tensors_doc=TENSORS_DOC, tensors=info, tolerance=tol, tolerance_image=tol_image,
                    tolerance_unet_output=tol_unet,
                    uint8_max_diff_fp32_vs_fp64=uint8_diff, tolerance_uint8=tol_uint8,
                    sensitivity_max_abs=sens, stats=stats)
        write_json(out / (name + ".json"), meta)
        cases.append({"name": name, "kind": "e2e", "files": [name + ".safetensors", name + ".json"],
                      "tensors": info, "sha256": {name + ".safetensors": sha256(path)}, "tolerance": tol,
                      "tolerance_image": tol_image, "tolerance_unet_output": tol_unet, "tolerance_uint8": tol_uint8,
                      "sensitivity_max_abs": sens})
        print(f"{name}: atol {tol['atol']:.3g} rtol {tol['rtol']:.3g} "
              f"(fp32 vs fp64 {tol['measured_fp32_vs_fp64_max_abs']:.3g} abs, "
              f"{tol['measured_fp32_vs_fp64_max_rel']:.3g} rel); image atol {tol_image['atol']:.3g} "
              f"({tol_image['measured_fp32_vs_fp64_max_abs']:.3g}); unet output atol {tol_unet['atol']:.3g} "
              f"({tol_unet['measured_fp32_vs_fp64_max_abs']:.3g}); uint8 diff {uint8_diff}; "
              f"timesteps {t32['timesteps'].tolist()}; sensitivity {sens}; {stats}")

    manifest = {
        "generator": "tests/reference/make_sd2_tiny.py",
        "reference": {
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
        },
        "vae_scaling_factor": VAE_CONFIG["scaling_factor"],
        "tolerance_method": "each case ran twice in the reference: float32 and float64 (same inputs); "
                            "atol/rtol = max(1e-4, 10 x the measured fp32-vs-fp64 max error). "
                            "rel error = max|diff| / max|ref|.",
        "safetensors": "tensors in each case file are named as in its 'tensors' list; __metadata__ {'format':'pt'}",
        "cases": cases,
    }
    write_json(out / "manifest.json", manifest)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")


if __name__ == "__main__":
    main()
