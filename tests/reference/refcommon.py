"""Helpers shared by the reference-data scripts in tests/reference/ (make_sd2_tiny.py,
make_img2img_inpaint.py). Not a script; the scripts import it as `refcommon` (their own folder is on
sys.path when they are run as `python tests/reference/<script>.py`).

Importing it sets the offline/quiet environment variables before torch, diffusers and transformers
are imported, so import it first.
"""
import hashlib
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

CHECK = "max|x-ref| <= atol  OR  max|x-ref| / max|ref| <= rtol"
DTYPE_NAMES = {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}


def fail(msg):
    print(Path(sys.argv[0]).name + ": " + msg, file=sys.stderr)
    sys.exit(1)


def check_versions(pinned, torch_tested=None):
    """pinned: {module: version}; any other version is refused. torch only warns."""
    for mod, want in pinned.items():
        if mod.__version__ != want:
            fail(f"{mod.__name__} {mod.__version__} found, this reference is pinned to {want}")
    if torch_tested is not None and not torch.__version__.startswith(torch_tested):
        print(f"warning: torch {torch.__version__}, the data were made with {torch_tested}x", file=sys.stderr)


def deterministic():
    """One CPU thread, deterministic algorithms, a fixed global seed."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def json_safe(obj):
    """Non-finite floats as strings ("-inf"): Python's json writes -Infinity, which is not JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(obj), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_stored(t):
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.to(torch.float32)
    return t.contiguous()


def tensor_info(tensors):
    return {k: {"shape": list(v.shape), "dtype": DTYPE_NAMES[v.dtype]} for k, v in tensors.items()}


def save_tensors(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: to_stored(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def error(a32, a64):
    a32, a64 = a32.detach().to(torch.float64), a64.detach().to(torch.float64)
    assert a32.shape == a64.shape, (a32.shape, a64.shape)
    max_abs = (a32 - a64).abs().max().item()
    max_ref = a64.abs().max().item()
    return max_abs, (max_abs / max_ref if max_ref > 0 else max_abs)


def tolerance(pairs):
    """pairs: (fp32, fp64) tensors, each compared on its own; the worst of each error applies."""
    errs = [error(a, b) for a, b in pairs]
    max_abs = max(e[0] for e in errs)
    max_rel = max(e[1] for e in errs)
    return {
        "atol": max(1e-4, 10 * max_abs),
        "rtol": max(1e-4, 10 * max_rel),
        "measured_fp32_vs_fp64_max_abs": max_abs,
        "measured_fp32_vs_fp64_max_rel": max_rel,
        "check": CHECK,
    }


@torch.no_grad()
def reinit(module, seed, out_gain=None):
    """Seeded weights of unit scale (the libraries' default init leaves CLIP's activations ~0.02,
    where gelu vs quick_gelu or a wrong head count would hide below the tolerance): linear/conv
    weights N(0, 1/fan_in), biases N(0, 0.05^2), norm weights 1 + N(0, 0.1^2), norm biases
    N(0, 0.1^2), embeddings N(0, 1). `out_gain` scales named parameters afterwards."""
    g = torch.Generator("cpu").manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    for name, m in sorted(module.named_modules(), key=lambda kv: kv[0]):
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(randn(m.weight.shape) / fan_in ** 0.5)
            if m.bias is not None:
                m.bias.copy_(0.05 * randn(m.bias.shape))
        elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            if m.weight is not None:
                m.weight.copy_(1 + 0.1 * randn(m.weight.shape))
                m.bias.copy_(0.1 * randn(m.bias.shape))
        elif isinstance(m, torch.nn.Embedding):
            m.weight.copy_(randn(m.weight.shape))
    for name, gain in (out_gain or {}).items():
        module.get_parameter(name).mul_(gain)


def float64_text_encoder(pipe):
    """transformers 4.40 builds CLIP's causal mask as torch.full(..., finfo(float64).min) in the
    default dtype, which overflows float32: run a float64 text encoder with float64 as default."""
    saved = []
    pipe.text_encoder.register_forward_pre_hook(
        lambda m, a: (saved.append(torch.get_default_dtype()), torch.set_default_dtype(torch.float64)) and None)
    pipe.text_encoder.register_forward_hook(lambda m, a, o: torch.set_default_dtype(saved.pop()) and None)


def load_pipeline(cls, folder, dtype):
    """A diffusers pipeline class loaded offline from `folder` in `dtype`, in eval mode, no progress bar."""
    pipe = cls.from_pretrained(str(folder), safety_checker=None, feature_extractor=None,
                               requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dtype=dtype)
    pipe.folder_scheduler_config = pipe.scheduler.config  # every case's scheduler is made from this
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval()
    if dtype == torch.float64:
        float64_text_encoder(pipe)
    return pipe
