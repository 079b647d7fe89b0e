#!/usr/bin/env python3
"""Image-to-image and inpainting reference data for libsd's tests, made by diffusers itself.

Run by hand from the repository root (never in CI; the tests only read what this writes):

    .venv-torch/bin/python tests/reference/make_img2img_inpaint.py

It replaces tests/data/img2img/ (or --out DIR) entirely; it takes about half a minute on one CPU thread.

Reference stack (pinned; the script refuses other versions of diffusers, transformers, Pillow and
scipy): torch 2.11.0 (CPU; other versions only warn), diffusers 0.27.2, transformers 4.40.2,
Pillow 13.0.0, scipy 1.17.1 (LMSDiscreteScheduler integrates its coefficients with
scipy.integrate.quad), numpy, safetensors: the venv of bench/compare/requirements.txt. Nothing is downloaded (HF_HUB_OFFLINE).
Deterministic: one CPU thread, torch deterministic algorithms, seeded generators, sorted JSON; the
same versions write the same bytes. Every case's float32 run is made twice and must be identical.

Models:
  * sd1_tiny: the golden tiny SD 1.x pipeline ../shared/golden/pipelines/sd1_tiny (or --golden DIR),
    read in place, never copied: UNet in_channels 4, a 2-level VAE (vae_scale_factor 2, so the image
    processor snaps sizes to multiples of 2, not 8), PNDM scheduler config, CLIP's full tokenizer.
  * inpaint9: sd1_tiny's vae/, text_encoder/, tokenizer/, scheduler/ and model_index.json with unet/
    replaced by inpaint9_unet/ written here: a UNet2DConditionModel with in_channels 9 (4 latent +
    1 mask + 4 masked-image latent channels), seeded N(0, 1/fan_in) weights (refcommon.reinit).
    The script assembles that folder in a temporary directory and loads it as a user would; the C++
    test does the same.

Inputs (inputs/*.png) are drawn with numpy from fixed seeds: gradients, shapes, noise; masks with a
few pixels at 127/128 (binarization at 0.5: 127/255 -> 0, 128/255 -> 1) and an RGB mask with colors
of luma 127/128. Init images are opened as a user does, Image.open(p).convert("RGB") (the RGBA one
loses its alpha); masks are passed as opened (the mask processor converts them to "L"). The e2e
inputs are 32 px (32x32, 48x32, 33x25, masks 32x32/40x40/48x32): sd1_tiny's latents are half the
image size, so 64 px cases would need ~10 MB of per-step tensors. sd1_tiny's image processor snaps
sizes to multiples of 2, so the resized e2e case uses a 33x25 image (-> 32x24, Lanczos); a 70x52
image is kept as is (resize/preprocess_image_70x52_f2; _f8 is SD 1.5's factor, -> 64x48). The
larger inputs (64x64, 70x52, 80x80) serve the resize cases only.

Cases (e2e/<case>.json + .safetensors): StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline,
output_type "np", one torch.Generator("cpu").manual_seed(generator_seed), the scheduler made with
XScheduler.from_config(pipe.scheduler.config) (+ use_karras_sigmas=True for dpm++2m-karras). Every
tensor diffusers computes on the way is recorded (hooks and wrappers, never a changed computation):
see TENSORS_DOC; each case's JSON lists the generator draws in order (generator_draws) and notes on
what diffusers does there. With given latents (latents=, from latents_seed) generator_seed is null,
but diffusers still draws the VAE posterior samples (masked image; 4-channel: the init image too)
from a generator -- without one they would come from torch's global RNG -- so the script passes
torch.Generator("cpu").manual_seed(vae_generator_seed = 0), libsd's default seed.

Resize cases (resize/<case>.json + .safetensors [+ .png]), which a C++ port must reproduce bit for
bit: the JSON names its "source" file, "operation" ("image_processor": tensor image_tensor [1,3,H,W];
"mask_processor": mask_tensor [1,1,H,W] and lanczos_uint8; "resize": Pillow's Image.resize((width,
height), LANCZOS), "output" [H,W,C] uint8; "convert_L": convert("L"), "output" [H,W,1] uint8),
"width"/"height" (the output size) and "mode"; "input" is the source's pixels [H,W,C] uint8.

Tolerances: every e2e case runs in float32 (the stored reference) and again in float64 (the
pipeline .to(float64)) with the same generator seed. torch.randn draws other values in float64 than
in float32, so for the float64 run every randn_tensor() of diffusers (pipelines, VAE posterior
sampling, DDIM eta / Euler ancestral step noise) is wrapped: it draws in float32 from the same
generator and casts to float64; the script checks that each float64 draw equals the float32 run's
draw. Given latents are passed to the float64 run as the same values in float64. atol/rtol =
max(1e-4, 10 x the measured fp32-vs-fp64 max error), rel error = max|diff| / max|ref|
(refcommon.tolerance); tolerance_uint8 = max(1, the largest uint8 difference seen).

Layout (names in manifest.json are relative to the output folder):
  inputs/*.png                  the input images and masks
  inpaint9_unet/                config.json + diffusion_pytorch_model.safetensors (save_pretrained)
  e2e/<case>.json/.safetensors  whole pipeline runs
  resize/<case>.json/.safetensors/.png   image-processor and Pillow cases
  manifest.json                 the cases, their tolerances, the pipelines and inputs
"""
import argparse
import shutil
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import refcommon  # first: sets the offline environment before torch/diffusers/transformers load
from refcommon import error, fail, load_pipeline, reinit, save_tensors, sha256, tensor_info, \
    to_stored, tolerance, write_json
import numpy as np  # noqa: E402
import torch  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
import scipy  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
import safetensors  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
import diffusers.utils.torch_utils as torch_utils  # noqa: E402
# Every module whose randn_tensor the float64 runs wrap (imported here so that they are loaded).
import diffusers.models.autoencoders.vae  # noqa: E402,F401
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img  # noqa: E402,F401
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint  # noqa: E402,F401
import diffusers.schedulers.scheduling_ddim  # noqa: E402,F401
import diffusers.schedulers.scheduling_dpmsolver_multistep  # noqa: E402,F401
import diffusers.schedulers.scheduling_euler_ancestral_discrete  # noqa: E402,F401

PINNED = {diffusers: "0.27.2", transformers: "4.40.2", PIL: "13.0.0", scipy: "1.17.1"}
TORCH_TESTED = "2.11."
SD1_TINY = "pipelines/sd1_tiny"  # under the golden folder

INPAINT9_UNET_CONFIG = dict(  # a tiny runwayml/stable-diffusion-inpainting-style UNet (9 input channels)
    sample_size=32,
    in_channels=9,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(8, 16),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=2,  # diffusers reads it as the number of heads (SD 1.x: 8)
    cross_attention_dim=32,  # sd1_tiny's text encoder hidden size
    norm_num_groups=4,
    norm_eps=1e-05,
    flip_sin_to_cos=True,
    freq_shift=0,
    act_fn="silu",
    downsample_padding=1,
    center_input_sample=False,
    use_linear_projection=False,
    upcast_attention=False,
)
INPAINT9_SEED = 909

SCHEDULERS = {  # libsd's names
    "pndm": (PNDMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}),
    "dpm++2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "lms": (LMSDiscreteScheduler, {}),
}

# --------------------------------------------------------------------------------------------------
# the cases


def img2img(name, scheduler, strength, steps, seed, image="inputs/image_32x32.png", prompt="a watercolor painting "
            "of a lighthouse", negative_prompt="", guidance_scale=7.5, eta=None, batch=1):
    return dict(name=name, mode="img2img", pipeline="golden:" + SD1_TINY, scheduler=scheduler, strength=strength,
                steps=steps, generator_seed=seed, init_image=image, mask=None, prompt=prompt,
                negative_prompt=negative_prompt, guidance_scale=guidance_scale, eta=eta, batch=batch,
                height=None, width=None, latents_seed=None)


def inpaint(name, pipeline, scheduler, strength, steps, seed, image, mask, height, width, prompt,
            negative_prompt=None, guidance_scale=7.5, eta=None, batch=1, latents_seed=None):
    """seed None with latents_seed: latents are given, and the generator diffusers still needs for the
    VAE posterior samples is seeded with VAE_SEED_WITH_LATENTS."""
    d = dict(name=name, mode="inpaint", pipeline=pipeline, scheduler=scheduler, strength=strength, steps=steps,
             generator_seed=seed, init_image=image, mask=mask, prompt=prompt, negative_prompt=negative_prompt,
             guidance_scale=guidance_scale, eta=eta, batch=batch, height=height, width=width,
             latents_seed=latents_seed)
    if latents_seed is not None:
        assert seed is None
        d["vae_generator_seed"] = VAE_SEED_WITH_LATENTS
    return d


I9 = "inpaint9"
S1 = "golden:" + SD1_TINY
# With latents= given, diffusers still samples the VAE posteriors (latent_dist.sample(generator)); the
# script then passes torch.Generator("cpu").manual_seed(0): libsd's default seed (GenerateOptions::seed).
VAE_SEED_WITH_LATENTS = 0
CASES = [
    img2img("img2img_pndm_s0.75", "pndm", 0.75, 8, 1001),
    img2img("img2img_pndm_s0.3", "pndm", 0.3, 10, 1002, prompt="a red barn in a snowy field"),
    img2img("img2img_ddim_s1.0", "ddim", 1.0, 6, 1003, prompt="an oil painting of a harbor at dusk"),
    img2img("img2img_ddim_s0.75_eta0.5", "ddim", 0.75, 8, 1004, eta=0.5, prompt="a city street in the rain"),
    # sd1_tiny's VAE factor is 2: a 33x25 image is snapped down to 32x24 with Lanczos (a 70x52 one,
    # already a multiple of 2, would not be resized at all: see resize/preprocess_image_70x52_f2).
    img2img("img2img_euler_s0.6_resized", "euler", 0.6, 10, 1005, image="inputs/image_33x25.png",
            prompt="a bowl of fruit on a table"),
    img2img("img2img_dpm++2m_s0.75_b2", "dpm++2m", 0.75, 8, 1006, image="inputs/image_48x32.png",
            negative_prompt="blurry", batch=2, prompt="a mountain lake, panorama"),
    img2img("img2img_lms_s0.5", "lms", 0.5, 10, 1007, prompt="a portrait of a cat wearing a hat"),
    img2img("img2img_euler-a_s0.75_nocfg", "euler-a", 0.75, 8, 1008, image="inputs/image_rgba_32x32.png",
            guidance_scale=1.0, negative_prompt=None, prompt="a stained glass window"),
    img2img("img2img_dpm++2m-karras_s0.8", "dpm++2m-karras", 0.8, 10, 1009, prompt="a forest path in autumn"),
    inpaint("inpaint9_pndm_s1.0", I9, "pndm", 1.0, 6, 2010, "inputs/image_32x32.png", "inputs/mask_32x32.png",
            32, 32, "a yellow flower in a vase", negative_prompt=""),
    inpaint("inpaint9_ddim_s0.75_48x32", I9, "ddim", 0.75, 8, 2011, "inputs/image_48x32.png",
            "inputs/mask_rgb_48x32.png", 32, 48, "a sailboat on the sea", negative_prompt="low quality"),
    inpaint("inpaint9_dpm++2m_s1.0_latents_b2", I9, "dpm++2m", 1.0, 6, None, "inputs/image_32x32.png",
            "inputs/mask_32x32.png", 32, 32, "a wooden bench", negative_prompt="", batch=2, latents_seed=3012),
    inpaint("inpaint4_pndm_s1.0", S1, "pndm", 1.0, 6, 2013, "inputs/image_32x32.png", "inputs/mask_32x32.png",
            32, 32, "a stone wall with ivy", negative_prompt=""),
    inpaint("inpaint4_euler_s0.75_mask40", S1, "euler", 0.75, 8, 2014, "inputs/image_32x32.png",
            "inputs/mask_40x40.png", 32, 32, "a sleeping dog", negative_prompt="ugly"),
    inpaint("inpaint4_ddim_s0.6_latents_48x32", S1, "ddim", 0.6, 10, None, "inputs/image_48x32.png",
            "inputs/mask_rgb_48x32.png", 32, 48, "a hot air balloon", negative_prompt="", latents_seed=3015),
]

TENSORS_DOC = {
    "timesteps": "the t of each loop iteration that ran (after get_timesteps' strength slicing); int64 for "
                 "pndm/ddim/dpm, float32 for euler/euler-a/lms (LMS: float64 in diffusers, stored float32)",
    "init_image": "image_processor.preprocess(...) output [1,3,H,W] in [-1,1], float32 (before the dtype cast)",
    "mask_condition": "mask_processor.preprocess(mask, height, width) [1,1,H,W]: Lanczos resize to HxW if needed, "
                      "convert('L'), /255, binarized (<0.5 -> 0, >=0.5 -> 1)",
    "mask_latent": "interpolate(mask_condition, size=(H/f, W/f)) (mode 'nearest'), repeated to [B,1,h,w] "
                   "(before the CFG duplication)",
    "masked_image_latents": "scaling_factor * vae.encode(init_image * (mask_condition < 0.5)).latent_dist"
                            ".sample(generator), repeated to [B,4,h,w] (before the CFG duplication); computed "
                            "(and the generator drawn) by the 4-channel pipeline too, which never uses it",
    "image_latents": "scaling_factor * vae.encode(init_image).latent_dist.sample(generator), repeated to the batch: "
                     "img2img and 9-channel inpaint with strength < 1: what add_noise received in prepare_latents; "
                     "4-channel inpaint: the image_latents of the per-step blend",
    "given_latents": "the latents= argument: torch.randn([B,4,h,w], generator=torch.Generator('cpu')"
                     ".manual_seed(latents_seed))",
    "initial_latents": "what prepare_latents returned (the latents entering the loop)",
    "latents_per_step": "latents after each iteration, after the 4-channel blend where it applies "
                        "(callback_on_step_end)",
    "unet_input_per_step": "the UNet's sample input at each step: scale_model_input(cat([latents]*2 if CFG)) "
                           "(9-channel: then cat([., mask, masked_image_latents], dim=1), mask/masked latents "
                           "CFG-duplicated)",
    "image": "pipeline output, output_type='np': (vae.decode(latents / scaling_factor) / 2 + 0.5).clamp(0, 1), NHWC",
    "image_uint8": "VaeImageProcessor.numpy_to_pil(image) as uint8 [B,H,W,3]: (image * 255).round()",
}

# --------------------------------------------------------------------------------------------------
# inputs


def _grid(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x / (w - 1), y / (h - 1)


def make_rgb(w, h, seed):
    """Gradients, a disc, a rectangle, stripes and noise."""
    rng = np.random.default_rng(seed)
    x, y = _grid(w, h)
    img = np.stack([40 + 180 * x, 30 + 200 * y, 128 + 90 * np.sin(2 * np.pi * (x + 0.5 * y))], axis=-1)
    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    disc = (x - cx) ** 2 * (w / h) ** 2 + (y - cy) ** 2 < r ** 2
    img[disc] = rng.uniform(0, 255, 3)
    x0, y0 = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
    rect = (x > x0) & (x < x0 + 0.35) & (y > y0) & (y < y0 + 0.2)
    img[rect] = 0.5 * img[rect] + 0.5 * rng.uniform(0, 255, 3)
    stripes = (np.floor((x * w + y * h) / 5) % 4) == 0
    img[stripes] *= 0.8
    img += rng.normal(0, 10, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_mask(w, h, seed, soft=False):
    """White (255) ellipse and rectangle = repaint, black = keep; a ring of 127/128 (and a few other
    mid-gray) pixels around the ellipse; soft=True: a smooth edge instead (Lanczos then binarize)."""
    rng = np.random.default_rng(seed)
    x, y = _grid(w, h)
    d = ((x - 0.45) / 0.28) ** 2 + ((y - 0.55) / 0.22) ** 2
    if soft:
        m = np.clip((1.25 - d) / 0.5, 0, 1) * 255
    else:
        m = np.where(d < 1, 255.0, 0.0)
        ring = (d >= 1) & (d < 1.35)
        m[ring] = rng.choice([127, 128], size=int(ring.sum()))
        for v in (1, 64, 126, 129, 192, 254):
            m[rng.integers(0, h), rng.integers(0, w)] = v
    m[(x > 0.7) & (x < 0.9) & (y > 0.1) & (y < 0.35)] = 255
    return np.round(m).astype(np.uint8)


def luma(rgb):
    """Pillow's convert('L') (ITU-R 601-2, fixed point)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def make_rgb_mask(w, h, seed):
    """An RGB mask whose luma decides: white/green/yellow regions (L >= 128) repaint, red/blue/black keep,
    and colored pixels whose luma is exactly 127 or 128."""
    rng = np.random.default_rng(seed)
    x, y = _grid(w, h)
    img = np.zeros((h, w, 3), np.int64)
    img[((x - 0.3) / 0.2) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1] = (255, 255, 255)
    img[(x > 0.55) & (x < 0.75) & (y > 0.2) & (y < 0.8)] = (0, 255, 0)      # L 150 -> repaint
    img[(x > 0.8) & (y < 0.5)] = (255, 0, 0)                                 # L 76 -> keep
    img[(x > 0.8) & (y >= 0.5)] = (255, 255, 0)                              # L 226 -> repaint
    img[(y > 0.9) & (x < 0.5)] = (0, 0, 255)                                 # L 29 -> keep
    # colors of luma 127 and 128 (not gray): binarization right at the threshold
    cand = rng.integers(0, 256, size=(20000, 3))
    lum = luma(cand)
    near = {v: cand[lum == v][:24] for v in (127, 128)}
    inner = ((x - 0.3) / 0.2) ** 2 + ((y - 0.5) / 0.3) ** 2
    outer = ((x - 0.3) / 0.23) ** 2 + ((y - 0.5) / 0.33) ** 2
    edge = (inner >= 1) & (outer < 1)
    ys, xs = np.nonzero(edge)
    for i, (yy, xx) in enumerate(zip(ys, xs)):
        img[yy, xx] = near[127 + (i % 2)][(i // 2) % 24]
    return img.astype(np.uint8)


def make_inputs(out):
    """The input PNGs; returns {relative path: description}."""
    d = out / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    made = {}

    def save(name, arr, mode, doc):
        Image.fromarray(arr, mode=mode).save(d / name)
        made["inputs/" + name] = doc

    # the e2e cases' inputs (32 px: sd1_tiny's latents are half the image size, so 64 px cases would
    # need ~10 MB of per-step tensors)
    save("image_32x32.png", make_rgb(32, 32, 11), "RGB", "RGB 32x32 (e2e)")
    save("image_48x32.png", make_rgb(48, 32, 12), "RGB", "RGB, width 48, height 32: non-square (e2e)")
    save("image_33x25.png", make_rgb(33, 25, 14), "RGB",
         "RGB 33x25: sd1_tiny's image processor (factor 2) snaps it down to 32x24 with Lanczos (e2e)")
    rgba = np.concatenate([make_rgb(32, 32, 15), np.zeros((32, 32, 1), np.uint8)], axis=-1)
    x, y = _grid(32, 32)
    rgba[..., 3] = np.clip(np.round(255 * (0.2 + x * y)), 0, 255)
    rgba[:6, :6, 3] = 0  # fully transparent pixels keep their color (convert('RGB') drops alpha)
    save("image_rgba_32x32.png", rgba, "RGBA",
         "RGBA 32x32 with varying alpha; cases open it with .convert('RGB') (e2e)")
    save("mask_32x32.png", make_mask(32, 32, 16), "L",
         "L 32x32: white ellipse + rectangle = repaint, a ring of 127/128 pixels, a few other grays (e2e)")
    save("mask_40x40.png", make_mask(40, 40, 17, soft=True), "L",
         "L 40x40 with a soft edge: the mask processor resizes it (Lanczos) to the 32x32 generation (e2e)")
    save("mask_rgb_48x32.png", make_rgb_mask(48, 32, 18), "RGB",
         "RGB 48x32: the mask processor converts it to L; colors of luma 127 and 128 at the ellipse edge (e2e)")
    # the resize cases' larger inputs
    save("image_64x64.png", make_rgb(64, 64, 21), "RGB", "RGB 64x64 (resize cases)")
    save("image_70x52.png", make_rgb(70, 52, 13), "RGB",
         "RGB 70x52: not a multiple of 8, a multiple of 2 (sd1_tiny's image processor keeps it) (resize cases)")
    save("mask_80x80.png", make_mask(80, 80, 27, soft=True), "L", "L 80x80 with a soft edge (resize cases)")
    return made


# --------------------------------------------------------------------------------------------------
# the float64 runs' noise, and a record of every draw

_ORIG_RANDN = torch_utils.randn_tensor
_DRAWS = []


def _call_path():
    names, f = [], sys._getframe(2)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if f.f_code.co_name == "__call__" and "pipeline_stable_diffusion" in mod:
            break
        if mod.startswith("diffusers"):
            names.append(f.f_code.co_name)
        f = f.f_back
    return " > ".join(reversed(names))


def _randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    if generator is None:
        raise RuntimeError("an unseeded randn_tensor in " + _call_path())
    draw_dtype = torch.float32 if dtype == torch.float64 else dtype
    out = _ORIG_RANDN(shape, generator=generator, device=device, dtype=draw_dtype, layout=layout)
    _DRAWS.append({"shape": list(out.shape), "by": _call_path(), "value": out.clone()})
    return out if dtype is None else out.to(dtype)


def patch_randn():
    patched = []
    for name, mod in sorted(sys.modules.items()):
        if name.startswith("diffusers") and getattr(mod, "randn_tensor", None) is _ORIG_RANDN:
            setattr(mod, "randn_tensor", _randn_tensor)
            patched.append(name)
    for need in ("diffusers.models.autoencoders.vae", "diffusers.schedulers.scheduling_ddim",
                 "diffusers.schedulers.scheduling_euler_ancestral_discrete",
                 "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
                 "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint"):
        assert need in patched, need


# --------------------------------------------------------------------------------------------------
# pipelines


def write_inpaint9_unet(folder):
    unet = UNet2DConditionModel(**INPAINT9_UNET_CONFIG).eval()
    reinit(unet, seed=INPAINT9_SEED)
    unet.save_pretrained(str(folder), safe_serialization=True)


def assemble_inpaint9(sd1_tiny, unet_folder, dst):
    """sd1_tiny with unet/ replaced: what the C++ test builds in a temporary directory too."""
    for p in sorted(sd1_tiny.iterdir()):
        if p.name == "unet":
            continue
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, dst / p.name)
    shutil.copytree(unet_folder, dst / "unet")


# --------------------------------------------------------------------------------------------------
# e2e


def seed_of(case):
    return case["generator_seed"] if case["generator_seed"] is not None else case["vae_generator_seed"]


def latent_shape(case, f):
    return [case["batch"], 4, case["height"] // f, case["width"] // f]


def given_latents(case, f):
    g = torch.Generator("cpu").manual_seed(case["latents_seed"])
    return torch.randn(latent_shape(case, f), generator=g)


@torch.no_grad()
def run_e2e(pipe, case, out, dtype, unet_pre_hook=None):
    """One pipeline call with everything diffusers computes on the way recorded."""
    cls, extra = SCHEDULERS[case["scheduler"]]
    scheduler = cls.from_config(pipe.folder_scheduler_config, **extra)
    pipe.scheduler = scheduler
    rec = defaultdict(list)
    in_prepare = []

    def wrap(obj, attr, record):
        fn = getattr(obj, attr)

        def wrapper(*args, **kwargs):
            result = fn(*args, **kwargs)
            record(args, kwargs, result)
            return result
        setattr(obj, attr, wrapper)
        return obj, attr

    def prepare_latents(*args, **kwargs):
        in_prepare.append(True)
        try:
            return orig_prepare(*args, **kwargs)
        finally:
            in_prepare.pop()

    orig_prepare = pipe.prepare_latents
    pipe.prepare_latents = prepare_latents
    wrapped = [(pipe, "prepare_latents")]
    wrapped.append(wrap(pipe, "prepare_latents", lambda a, k, r: rec["prepare"].append(r)))
    wrapped.append(wrap(pipe.image_processor, "preprocess", lambda a, k, r: rec["init_image"].append(r.clone())))
    if case["mode"] == "inpaint":
        wrapped.append(wrap(pipe.mask_processor, "preprocess", lambda a, k, r: rec["mask_condition"].append(r.clone())))
        wrapped.append(wrap(pipe, "prepare_mask_latents", lambda a, k, r: rec["mask_latents"].append(r)))
    wrapped.append(wrap(scheduler, "add_noise", lambda a, k, r: rec["add_noise"].append(
        (bool(in_prepare), a[0].clone(), a[1].clone()))))

    def unet_hook(module, args, kwargs, output):
        rec["unet_in"].append(args[0].clone())

    def on_step(p, i, t, kwargs):
        rec["latents"].append(kwargs["latents"].clone())
        rec["t"].append(t.clone())
        return kwargs

    hooks = [pipe.unet.register_forward_hook(unet_hook, with_kwargs=True)]
    if unet_pre_hook is not None:
        hooks.append(pipe.unet.register_forward_pre_hook(unet_pre_hook))
    _DRAWS.clear()
    try:
        kwargs = dict(prompt=case["prompt"], negative_prompt=case["negative_prompt"],
                      image=Image.open(out / case["init_image"]).convert("RGB"),
                      strength=case["strength"], num_inference_steps=case["steps"],
                      guidance_scale=case["guidance_scale"], num_images_per_prompt=case["batch"],
                      generator=torch.Generator("cpu").manual_seed(seed_of(case)),
                      output_type="np", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
        if case["eta"] is not None:
            kwargs["eta"] = case["eta"]
        if case["mode"] == "inpaint":
            kwargs.update(mask_image=Image.open(out / case["mask"]), height=case["height"], width=case["width"])
            if case["latents_seed"] is not None:
                kwargs["latents"] = given_latents(case, pipe.vae_scale_factor).to(dtype)
        result = pipe(**kwargs)
    finally:
        for h in hooks:
            h.remove()
        for obj, attr in wrapped:
            obj.__dict__.pop(attr, None)
    draws = [dict(d) for d in _DRAWS]

    B = case["batch"]
    cfg = case["guidance_scale"] > 1
    assert len(rec["init_image"]) == 1 and len(rec["prepare"]) == 1
    t = {"timesteps": torch.stack(rec["t"]), "init_image": rec["init_image"][0]}
    prep = rec["prepare"][0]
    prepare_noise = [a for a in rec["add_noise"] if a[0]]
    if case["mode"] == "img2img":
        assert len(prepare_noise) == 1
        t["image_latents"] = prepare_noise[0][1]
        t["initial_latents"] = prep
    else:
        assert len(rec["mask_condition"]) == 1 and len(rec["mask_latents"]) == 1
        t["mask_condition"] = rec["mask_condition"][0]
        mask, masked = rec["mask_latents"][0]
        if cfg:
            assert torch.equal(mask[:B], mask[B:]) and torch.equal(masked[:B], masked[B:])
        t["mask_latent"], t["masked_image_latents"] = mask[:B].clone(), masked[:B].clone()
        t["initial_latents"] = prep[0]
        if pipe.unet.config.in_channels == 4:
            t["image_latents"] = prep[2]
        elif prepare_noise:
            assert len(prepare_noise) == 1
            t["image_latents"] = prepare_noise[0][1]
        if case["latents_seed"] is not None:
            t["given_latents"] = kwargs["latents"]
    t["latents_per_step"] = torch.stack(rec["latents"])
    t["unet_input_per_step"] = torch.stack(rec["unet_in"])
    images = result.images
    t["image"] = torch.from_numpy(images.copy())
    t["image_uint8"] = torch.from_numpy(np.stack([np.array(p) for p in VaeImageProcessor.numpy_to_pil(images)]))
    assert t["image_uint8"].shape == t["image"].shape and t["image_uint8"].dtype == torch.uint8
    assert t["unet_input_per_step"].shape[1] == B * (2 if cfg else 1)
    config = dict(scheduler.config)
    if "_use_default_values" in config:  # a set's order in diffusers: sorted, for stable output
        config["_use_default_values"] = sorted(config["_use_default_values"])
    info = {"scheduler_config": config, "init_noise_sigma": float(scheduler.init_noise_sigma),
            "scheduler_timesteps_dtype": str(scheduler.timesteps.dtype).replace("torch.", ""),
            "scheduler_timesteps_all": scheduler.timesteps.tolist(), "order": scheduler.order}
    return t, draws, info


def same(a, b):
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def e2e_case(pipes, case, out):
    p32, p64 = pipes[(case["pipeline"], case["mode"])]
    t32, d32, info = run_e2e(p32, case, out, torch.float32)
    t32b, d32b, _ = run_e2e(p32, case, out, torch.float32)
    same(t32, t32b)  # reproducible
    assert [(d["shape"], d["by"]) for d in d32] == [(d["shape"], d["by"]) for d in d32b]
    t64, d64, _ = run_e2e(p64, case, out, torch.float64)
    assert [(d["shape"], d["by"]) for d in d32] == [(d["shape"], d["by"]) for d in d64]
    for a, b in zip(d32, d64):
        assert torch.equal(a["value"], b["value"]), "the float64 run drew other noise"
    assert t32.keys() == t64.keys()
    for k in ("timesteps", "init_image", "mask_condition"):
        if k in t32:
            assert torch.equal(t32[k], t64[k]), k
    if "mask_latent" in t32:
        assert torch.equal(t32["mask_latent"], t64["mask_latent"].float())
    if "given_latents" in t32:
        assert torch.equal(t32["given_latents"], t64["given_latents"].float())

    steps = t32["latents_per_step"].shape[0]
    pairs = [(t32["initial_latents"], t64["initial_latents"])]
    pairs += [(t32[k], t64[k]) for k in ("image_latents", "masked_image_latents") if k in t32]
    pairs += [(t32["latents_per_step"][i], t64["latents_per_step"][i]) for i in range(steps)]
    pairs += [(t32["unet_input_per_step"][i], t64["unet_input_per_step"][i]) for i in range(steps)]
    tol = tolerance(pairs)
    tol_image = tolerance([(t32["image"], t64["image"])])
    u64 = (t64["image"] * 255).round().to(torch.uint8)
    uint8_diff = int((t32["image_uint8"].int() - u64.int()).abs().max())

    image = t32["image"]
    stats = {
        "image_fraction_clamped": float(((image <= 0) | (image >= 1)).float().mean()),
        "image_mean": float(image.mean()),
        "image_std": float(image.std()),
        "final_latents_std": float(t32["latents_per_step"][-1].std()),
        "initial_latents_std": float(t32["initial_latents"].std()),
    }
    sens = {}
    if case["mode"] == "inpaint" and p32.unet.config.in_channels == 9:
        final = t32["latents_per_step"][-1]

        def zero(channels):
            def hook(module, args):
                x = args[0].clone()
                x[:, channels] = 0
                return (x,) + tuple(args[1:])
            return hook
        for label, ch in (("mask channel (4) zeroed in the UNet input", slice(4, 5)),
                          ("masked-image latent channels (5-8) zeroed in the UNet input", slice(5, 9))):
            ts, _, _ = run_e2e(p32, case, out, torch.float32, unet_pre_hook=zero(ch))
            sens[label] = {"final_latents_max_abs": error(ts["latents_per_step"][-1], final)[0],
                           "image_max_abs": error(ts["image"], image)[0]}
    if case["generator_seed"] is None:  # latents given: the generator only samples VAE posteriors
        assert d32 and all(d["by"].endswith("retrieve_latents > sample") for d in d32), d32
    draws = [{"shape": d["shape"], "by": d["by"]} for d in d32]
    return t32, tol, tol_image, max(1, uint8_diff), uint8_diff, stats, sens, draws, info


def case_notes(case, pipe, info, t32):
    notes = []
    steps_run = t32["latents_per_step"].shape[0]
    init_timestep = min(int(case["steps"] * case["strength"]), case["steps"])
    notes.append(f"get_timesteps: init_timestep = min(int({case['steps']} * {case['strength']}), {case['steps']}) = "
                 f"{init_timestep}, t_start = {case['steps'] - init_timestep}; the loop ran timesteps"
                 f"[t_start * order:] of the scheduler's {len(info['scheduler_timesteps_all'])}: {steps_run} steps")
    if case["scheduler"] == "pndm" and steps_run < len(info["scheduler_timesteps_all"]) - 1:
        notes.append("PNDM (skip_prk_steps) lists its second timestep twice for its PLMS warm-up ([t0, t1, t1, t2, "
                     "...]); strength < 1 slices that list so the loop starts at the second copy of t1: the warm-up "
                     "pair becomes (t1, t2), the warm-up's second step recomputes x(t2) from x(t1), and from then "
                     "on each UNet call gets the sample one timestep noisier than the t it is given (diffusers' "
                     "behaviour, recorded as is)")
    if case["scheduler"] == "euler":
        notes.append("EulerDiscreteScheduler.step draws randn noise from the generator at every step although "
                     "s_churn = 0 makes it unused (generator_draws 'step')")
    if case["init_image"].startswith("inputs/image_rgba"):
        notes.append("the caller converts the RGBA file to RGB: the image processor's do_convert_rgb is False, so an "
                     "RGBA PIL image passed as is would become a 4-channel tensor, which prepare_latents takes "
                     "for latents")
    if case["mode"] == "img2img" and case["batch"] > 1:
        notes.append("num_images_per_prompt > 1: prepare_latents duplicates the one encoded image with its "
                     "deprecated 'len(prompt) != len(image)' path (a FutureWarning), then draws noise for the batch")
    if case["mode"] == "img2img":
        notes.append("generator draws: vae.encode(init_image).latent_dist.sample(generator) first (the posterior "
                     "is sampled, not its mean), then the add_noise noise [B,4,h,w]; the image is encoded once and "
                     "repeated to the batch")
    else:
        four = pipe.unet.config.in_channels == 4
        if four:
            notes.append("4-channel inpaint: image_latents (vae.encode(init_image), a generator draw) are computed "
                         "at any strength (return_image_latents); after each step latents = (1 - mask) * "
                         "add_noise(image_latents, noise, timesteps[i+1]) + mask * latents, un-noised image_latents "
                         "after the last step")
            notes.append("the masked image is VAE-encoded (a generator draw) although the 4-channel UNet never "
                         "uses masked_image_latents")
            if case["scheduler"] in ("euler", "euler-a", "lms"):
                notes.append("Euler-type add_noise inside the loop ignores the timestep it is given: it uses "
                             "sigmas[step_index] (already advanced by step(), so the sigma of timesteps[i+1])")
        if case["latents_seed"] is not None:
            notes.append("latents= given: prepare_latents returns latents * init_noise_sigma and uses the given "
                         "latents as `noise`; the generator is still drawn for the VAE encode(s): generator_seed is "
                         f"null and diffusers got torch.Generator('cpu').manual_seed({VAE_SEED_WITH_LATENTS}) "
                         "(vae_generator_seed, libsd's default seed)")
            if case["strength"] < 1:
                notes.append("given latents with strength < 1: the init image is NOT noised into the start "
                             "latents (they are the given noise x init_noise_sigma, as at strength 1), yet the loop "
                             "starts at the strength's timestep")
    return notes


# --------------------------------------------------------------------------------------------------
# resize cases


def resize_cases(out):
    """(name, tensors, meta, PIL image to save as PNG or None). meta: source (the input file), operation
    ("image_processor", "mask_processor", "resize" or "convert_L"), width/height (the output size), mode."""
    cases = []

    def u8(img):
        a = np.array(img)
        return torch.from_numpy(a[..., None] if a.ndim == 2 else a)

    for rel, factor, desc in (
            ("inputs/image_70x52.png", 2, "sd1_tiny's image processor: 70x52 is a multiple of 2, so no resize"),
            ("inputs/image_70x52.png", 8, "SD 1.5's factor 8: snapped down to 64x48 with Lanczos"),
            ("inputs/image_33x25.png", 2, "sd1_tiny's image processor: snapped down to 32x24 with Lanczos "
                                          "(the init image of e2e/img2img_euler_s0.6_resized)")):
        img = Image.open(out / rel).convert("RGB")
        outp = VaeImageProcessor(vae_scale_factor=factor).preprocess(img)
        name = f"resize/preprocess_{Path(rel).stem}_f{factor}"
        cases.append((name, {"input": u8(img), "image_tensor": outp},
                      {"call": f"VaeImageProcessor(vae_scale_factor={factor}).preprocess(Image.open(source)"
                               ".convert('RGB'))", "source": rel, "operation": "image_processor",
                       "width": outp.shape[3], "height": outp.shape[2], "mode": "RGB",
                       "description": desc + "; image_tensor [1,3,H,W] in [-1,1]"}, None))

    mp = VaeImageProcessor(vae_scale_factor=2, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    for rel, size, use in (("inputs/mask_40x40.png", 32, "the mask_condition of e2e/inpaint4_euler_s0.75_mask40"),
                           ("inputs/mask_80x80.png", 64, "an 80x80 mask for a 64x64 generation")):
        mask = Image.open(out / rel)
        outp = mp.preprocess(mask, height=size, width=size)
        name = f"resize/mask_{mask.width}x{mask.height}_to_{size}x{size}"
        cases.append((name, {"input": u8(mask), "mask_tensor": outp,
                             "lanczos_uint8": u8(mask.resize((size, size), Image.LANCZOS))},
                      {"call": "VaeImageProcessor(vae_scale_factor=2, do_normalize=False, do_binarize=True, "
                               f"do_convert_grayscale=True).preprocess(Image.open(source), height={size}, "
                               f"width={size})", "source": rel, "operation": "mask_processor",
                       "width": size, "height": size, "mode": mask.mode,
                       "description": f"the inpaint pipelines' mask processor ({use}): Lanczos {mask.width}x"
                                      f"{mask.height} -> {size}x{size} (L), /255, binarized at 0.5: mask_tensor "
                                      "[1,1,H,W]; lanczos_uint8 is the resized L image before /255"}, None))

    for rel, mode, size in (("inputs/image_70x52.png", "RGB", (64, 48)),
                            ("inputs/image_33x25.png", "RGB", (32, 24)),
                            ("inputs/image_64x64.png", "RGB", (40, 56)),
                            ("inputs/image_64x64.png", "RGB", (100, 72)),
                            ("inputs/mask_80x80.png", "L", (64, 64)),
                            ("inputs/mask_40x40.png", "L", (32, 32))):
        img = Image.open(out / rel).convert(mode)
        res = img.resize(size, Image.LANCZOS)
        name = f"resize/pil_lanczos_{mode.lower()}_{img.width}x{img.height}_to_{size[0]}x{size[1]}"
        cases.append((name, {"input": u8(img), "output": u8(res)},
                      {"call": f"Image.open(source).convert('{mode}').resize({size}, Image.LANCZOS)",
                       "source": rel, "operation": "resize", "width": size[0], "height": size[1], "mode": mode,
                       "description": f"Pillow's Lanczos, {mode} {img.width}x{img.height} -> {size[0]}x{size[1]} "
                                      "(width x height); tensors HWC uint8"}, res))

    rel = "inputs/mask_rgb_48x32.png"
    img = Image.open(out / rel)
    gray = img.convert("L")
    assert np.array_equal(np.array(gray), luma(np.array(img)))
    cases.append(("resize/convert_l_mask_rgb_48x32", {"input": u8(img), "output": u8(gray)},
                  {"call": "Image.open(source).convert('L')", "source": rel, "operation": "convert_L",
                   "width": gray.width, "height": gray.height, "mode": "L",
                   "description": "Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16; HWC uint8"}, gray))
    return cases


# --------------------------------------------------------------------------------------------------


def main():
    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "img2img")
    ap.add_argument("--golden", type=Path, default=repo.parent / "shared" / "golden",
                    help="the golden folder holding pipelines/sd1_tiny")
    ap.add_argument("--only", nargs="*", help="run only these e2e cases (for trying; the manifest lists them only)")
    args = ap.parse_args()

    refcommon.check_versions(PINNED, TORCH_TESTED)
    sd1_tiny = args.golden / SD1_TINY
    if not (sd1_tiny / "model_index.json").exists():
        fail(f"{sd1_tiny}: no model_index.json (pass --golden)")
    refcommon.deterministic()
    diffusers.utils.logging.disable_progress_bar()
    # num_images_per_prompt > 1 in img2img takes diffusers' deprecated image-duplication path (recorded as is)
    warnings.filterwarnings("ignore", message="You have passed 2 text prompts", category=FutureWarning)
    patch_randn()

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    inputs = make_inputs(out)
    write_inpaint9_unet(out / "inpaint9_unet")

    tmp = tempfile.TemporaryDirectory(prefix="inpaint9_")
    inpaint9 = Path(tmp.name)
    assemble_inpaint9(sd1_tiny, out / "inpaint9_unet", inpaint9)
    pipes = {}
    for key, cls, folder in (((S1, "img2img"), StableDiffusionImg2ImgPipeline, sd1_tiny),
                             ((S1, "inpaint"), StableDiffusionInpaintPipeline, sd1_tiny),
                             ((I9, "inpaint"), StableDiffusionInpaintPipeline, inpaint9)):
        pipes[key] = (load_pipeline(cls, folder, torch.float32), load_pipeline(cls, folder, torch.float64))
    p9 = pipes[(I9, "inpaint")][0]
    assert p9.unet.config.in_channels == 9 and pipes[(S1, "inpaint")][0].unet.config.in_channels == 4
    assert p9.vae_scale_factor == 2 and isinstance(p9.scheduler, PNDMScheduler)

    cases = []
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        name = "e2e/" + case["name"]
        t32, tol, tol_image, tol_uint8, uint8_diff, stats, sens, draws, info = e2e_case(pipes, case, out)
        pipe = pipes[(case["pipeline"], case["mode"])][0]
        path = out / (name + ".safetensors")
        save_tensors(path, t32)
        tensors = tensor_info({k: to_stored(v) for k, v in t32.items()})
        cls, extra = SCHEDULERS[case["scheduler"]]
        pipe_cls = "StableDiffusionImg2ImgPipeline" if case["mode"] == "img2img" else "StableDiffusionInpaintPipeline"
        meta = {k: v for k, v in case.items() if k != "name"}
        meta.update(
            name=name, kind=case["mode"], steps_run=int(t32["latents_per_step"].shape[0]),
            output_size=list(t32["image"].shape[1:3]),
            scheduler_class=cls.__name__ + "".join(f" ({k}={v})" for k, v in extra.items()),
            call=f"{cls.__name__}.from_config(pipe.scheduler.config{''.join(f', {k}={v}' for k, v in extra.items())}); "
                 f"{pipe_cls}.from_pretrained(folder, safety_checker=None, feature_extractor=None, "
                 "requires_safety_checker=False)(prompt, image=Image.open(init_image).convert('RGB')"
                 + (", mask_image=Image.open(mask), height, width" if case["mode"] == "inpaint" else "")
                 + ", strength, num_inference_steps=steps, guidance_scale, negative_prompt, num_images_per_prompt="
                 "batch" + (", eta" if case["eta"] is not None else "")
                 + (", latents=given_latents" if case["latents_seed"] is not None else "")
                 + ", generator=torch.Generator('cpu').manual_seed("
                 + ("vae_generator_seed" if case["generator_seed"] is None else "generator_seed")
                 + "), output_type='np', "
                 "callback_on_step_end=...)",
            generator_draws=draws, notes=case_notes(case, pipe, info, t32), stats=stats,
            tensors=tensors, tensors_doc={k: v for k, v in TENSORS_DOC.items() if k in tensors},
            tolerance=tol, tolerance_image=tol_image, tolerance_uint8=tol_uint8,
            uint8_max_diff_fp32_vs_fp64=uint8_diff, **info)
        if sens:
            meta["sensitivity_max_abs"] = sens
        write_json(out / (name + ".json"), meta)
        entry = {"name": name, "kind": case["mode"], "files": [name + ".safetensors", name + ".json"],
                 "tensors": tensors, "sha256": {name + ".safetensors": sha256(path)}, "tolerance": tol,
                 "tolerance_image": tol_image, "tolerance_uint8": tol_uint8,
                 "description": f"{case['mode']} on {case['pipeline']}, {case['scheduler']}, strength "
                                f"{case['strength']}, {case['steps']} steps ({meta['steps_run']} run), guidance "
                                f"{case['guidance_scale']}, batch {case['batch']}, {case['init_image']}"
                                + (f" + {case['mask']}" if case["mask"] else "")
                                + (", given latents" if case["latents_seed"] is not None else "")}
        if sens:
            entry["sensitivity_max_abs"] = sens
        cases.append(entry)
        print(f"{name}: {meta['steps_run']} steps, t {t32['timesteps'].tolist()}; atol {tol['atol']:.3g} rtol "
              f"{tol['rtol']:.3g} (fp32 vs fp64 {tol['measured_fp32_vs_fp64_max_abs']:.3g} abs, "
              f"{tol['measured_fp32_vs_fp64_max_rel']:.3g} rel); image atol {tol_image['atol']:.3g} "
              f"({tol_image['measured_fp32_vs_fp64_max_abs']:.3g}); uint8 diff {uint8_diff}; {stats}"
              + (f"; sensitivity {sens}" if sens else ""), flush=True)

    for name, tensors, meta, png in resize_cases(out):
        path = out / (name + ".safetensors")
        save_tensors(path, tensors)
        info = tensor_info({k: to_stored(v) for k, v in tensors.items()})
        files = [name + ".safetensors", name + ".json"]
        hashes = {name + ".safetensors": sha256(path)}
        if png is not None:
            png.save(out / (name + ".png"))
            files.append(name + ".png")
            hashes[name + ".png"] = sha256(out / (name + ".png"))
        exact = {"atol": 0, "rtol": 0, "check": "bit-exact (torch.equal)"}
        write_json(out / (name + ".json"), dict(meta, name=name, kind="resize", tensors=info, tolerance=exact,
                                                 output_png=(name + ".png") if png is not None else None))
        cases.append({"name": name, "kind": "resize", "files": files, "tensors": info, "sha256": hashes,
                      "tolerance": exact, "description": meta["description"], "source": meta["source"],
                      "operation": meta["operation"], "call": meta["call"]})
        print(f"{name}: {[(k, list(v.shape)) for k, v in tensors.items()]}")

    unet_files = sorted(str(p.relative_to(out)) for p in (out / "inpaint9_unet").rglob("*") if p.is_file())
    golden_st = sorted(p for p in sd1_tiny.rglob("*.safetensors"))
    manifest = {
        "generator": "tests/reference/make_img2img_inpaint.py",
        "reference": {
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "scipy": scipy.__version__,
            "safetensors": safetensors.__version__,
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
        },
        "vae_scaling_factor": 0.18215,
        "tolerance_method": "each e2e case ran twice in the reference: float32 and float64 with the same generator "
                            "seed, every diffusers randn_tensor draw of the float64 run made in float32 from that "
                            "generator and cast (checked equal to the float32 run's draws), given latents the same "
                            "values; atol/rtol = max(1e-4, 10 x the measured fp32-vs-fp64 max error) over "
                            "initial_latents, image_latents, masked_image_latents and every step's latents and UNet "
                            "input ('tolerance') and over image ('tolerance_image'); rel error = max|diff| / "
                            "max|ref|; tolerance_uint8 = max(1, largest uint8 difference). resize cases: bit-exact.",
        "safetensors": "tensors in each case file are named as in its 'tensors' list; __metadata__ {'format':'pt'}",
        "pipelines": {
            "golden:" + SD1_TINY: {
                "path": "../shared/golden/" + SD1_TINY + " (read in place, not copied)",
                "unet_in_channels": 4, "vae_scale_factor": 2, "scheduler": "PNDMScheduler",
                "sha256": {str(p.relative_to(sd1_tiny)): sha256(p) for p in golden_st},
            },
            I9: {
                "assemble": "a folder with ../shared/golden/pipelines/sd1_tiny's model_index.json, vae/, "
                            "text_encoder/, tokenizer/, scheduler/ and inpaint9_unet/ (this folder) as unet/; "
                            "loaded with StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None, "
                            "requires_safety_checker=False)",
                "files": unet_files,
                "sha256": {f: sha256(out / f) for f in unet_files if f.endswith(".safetensors")},
                "unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in INPAINT9_UNET_CONFIG.items()},
                "weights": f"refcommon.reinit(unet, seed={INPAINT9_SEED}): linear/conv N(0, 1/fan_in), biases "
                           "N(0, 0.05^2), norm weights 1 + N(0, 0.1^2), norm biases N(0, 0.1^2); float32",
                "unet_input": "cat([latents (scaled), mask, masked_image_latents], dim=1): channels 0-3, 4, 5-8",
            },
        },
        "inputs": {k: {"description": v, "sha256": sha256(out / k)} for k, v in sorted(inputs.items())},
        "cases": cases,
    }
    write_json(out / "manifest.json", manifest)
    tmp.cleanup()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")


if __name__ == "__main__":
    main()
