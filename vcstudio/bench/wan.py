"""``vcstudio bench tune|sample --backbone wan``: Wan2.1-T2V-1.3B's full-size architecture with
random weights (speed does not depend on values; models/wan/tiny.py ``full_size_wan``: 30 blocks,
12 heads x 128, FFN 8960, text dim 4096, patch 1x2x2, 16 channels in and out, Wan2.1's VAE),
timed through the real code paths: the one-shot LoRA tune (pipelines/flow/tune.py, bf16,
gradient checkpointing; a method's DiT terms as ``vcstudio tune`` adds them), an edit's 50 CFG
steps + decode (pipelines/flow/ode.py ``sample``) and FlowEdit (``flow_edit``), at 49 frames
480x832 by default. Prints the issue's targets beside the measured rows (issue 27: a tuning
step <= 2 s and <= 24 GiB, an edit <= 60 s, FlowEdit <= 90 s, DCT's terms <= 50% of a step).

The full size needs a GPU: on a CPU it is refused in one line unless ``--tiny`` (the tests'
tiny WanPipeline folder, saved and loaded through the user's path: a smoke test in seconds).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Optional

import numpy as np
import torch

from ..config import DataConfig, TuneConfig
from ..device import peak_memory_gib, pick_device, reset_peak, synchronize
from ..errors import InputError

# issue 27's targets on an H100 (49 frames 480x832)
TARGETS = {"tune_s_per_step": 2.0, "tune_peak_gib": 24.0, "edit_50_s": 60.0,
           "flowedit_s": 90.0, "dct_share": 0.5}
FULL = dict(frames=49, width=832, height=480)
TINY = dict(frames=9, width=48, height=32)
PROMPT = "a man is skiing down a snowy slope"


def shape(tiny: bool, frames: Optional[int] = None, size: Optional[int] = None
          ) -> tuple[int, int, int]:
    """(frames, height, width): the defaults (49 x 480x832; tiny 9 x 32x48), ``frames`` made
    4k + 1 and ``size`` the long side with the 480:832 aspect, sides on multiples of 16."""
    d = TINY if tiny else FULL
    f = d["frames"] if not frames else 4 * max(1, (int(frames) - 1) // 4) + 1
    if not size:
        return f, d["height"], d["width"]
    w = max(16, int(size) // 16 * 16)
    h = max(16, round(w * d["height"] / d["width"] / 16) * 16)
    return f, h, w


def backbone(tiny: bool, device: torch.device):
    """A random-weight Wan2.1 T2V backbone: the tiny test architecture (saved and loaded as a
    user's folder) or the full-size 1.3B (GPU only)."""
    from ..device import precision_for
    from ..models.wan.t2v import WanT2VBackbone

    if device.type != "cuda" and not tiny:
        raise InputError("The full-size Wan2.1-1.3B bench needs a GPU (random weights, 49 frames "
                         "at 480x832); run it on a GPU, or pass --tiny for a CPU smoke test.")
    if tiny:
        from ..models.family import load_flow_backbone
        from ..models.wan import build_tiny_wan_t2v

        with tempfile.TemporaryDirectory(prefix="vcs_bench_wan_") as folder:
            return load_flow_backbone(build_tiny_wan_t2v(folder), device), "tiny Wan2.1"
    from ..models.wan import full_size_wan

    prec = precision_for(device)
    parts = full_size_wan(i2v=False, device=device, dtype=prec.frozen_dtype)
    return WanT2VBackbone(parts, prec), "Wan2.1-T2V-1.3B (random)"


def _clip(f: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (f, h, w, 3), dtype=np.uint8)


def bench_tune(method: str = "baseline", tiny: bool = False, frames: Optional[int] = None,
               size: Optional[int] = None, steps: int = 3, warmup: int = 2,
               checkpointing: bool = True, device: Optional[torch.device] = None,
               dct: Optional[dict] = None, cfg_overrides: Optional[dict] = None) -> dict:
    """Seconds per LoRA step and the peak memory after ``warmup`` untimed steps, with
    ``method``'s DiT terms (their bench settings: DCT's random CLIP / VGG on every step,
    methods: ``bench_config``)."""
    from ..methods.registry import bench_config, get_flow_method
    from ..pipelines.flow.tune import FlowTuneConfig, tune_lora

    device = device or pick_device()
    f, h, w = shape(tiny, frames, size)
    bb, arch = backbone(tiny, device)
    cfg = TuneConfig(model=arch, method=method, steps=warmup + steps,
                     data=DataConfig(prompt=PROMPT, n_frames=f, width=w, height=h))
    cfg, label = bench_config(cfg, **(dct or {}))
    for k, v in (cfg_overrides or {}).items():
        cfg = dataclasses.replace(cfg, **{k: v})
    # APLA's perceptual net: VGG19's architecture with random weights (as DCT's feature nets:
    # the time does not depend on the values, and nothing is downloaded)
    cfg = dataclasses.replace(cfg, apla=dataclasses.replace(cfg.apla,
                                                            perceptual_random_weights=True))
    meth = get_flow_method(cfg)

    def progress(ev) -> None:
        if ev.stage == "tune" and ev.step == warmup:
            reset_peak(device)

    reset_peak(device)
    res = tune_lora(bb, _clip(f, h, w), PROMPT,
                    FlowTuneConfig(steps=warmup + steps, lora_rank=cfg.lora_rank,
                                   gradient_checkpointing=checkpointing),
                    progress, method=meth)
    timed = res.step_times[warmup:] or res.step_times
    per = sum(timed) / len(timed)
    from .pipelines import _device_name, method_columns

    return {"what": f"wan tune/{method}" + (f" ({label})" if label else ""), "arch": arch,
            "frames": f, "size": f"{w}x{h}", "s_per_step": per,
            "projected_300_steps_min": per * 300 / 60, "peak_gib": peak_memory_gib(device),
            **method_columns(meth.summary()), "device": _device_name(device)}


def dct_share_row(rows: list[dict]) -> Optional[dict]:
    """"DCT terms add X% to a step": the dct row's step time over the baseline's, against the
    issue's <= 50%; None without both rows."""
    base = next((r for r in rows if r["what"] == "wan tune/baseline"), None)
    dct = next((r for r in rows if r["what"].startswith("wan tune/dct")), None)
    if base is None or dct is None:
        return None
    share = dct["s_per_step"] / base["s_per_step"] - 1
    return {"what": "DCT terms add to a step", "frames": base["frames"], "size": base["size"],
            "share": f"+{share:.0%}", "target": f"<= +{TARGETS['dct_share']:.0%}",
            "ok": "yes" if share <= TARGETS["dct_share"] else "NO", "device": base["device"]}


def bench_sample(tiny: bool = False, frames: Optional[int] = None, size: Optional[int] = None,
                 steps: int = 50, guidance: float = 5.0,
                 device: Optional[torch.device] = None) -> list[dict]:
    """An edit's ``steps`` CFG steps + decode, and FlowEdit (its defaults scaled to ``steps``:
    n_max = 2/3 of them, two CFG velocities per step) + decode: seconds and peak memory."""
    from ..config import guided_passes
    from ..pipelines.flow.ode import FLOWEDIT_DEFAULTS, flow_edit, sample
    from .pipelines import _device_name

    device = device or pick_device()
    f, h, w = shape(tiny, frames, size)
    bb, arch = backbone(tiny, device)
    src, tgt, neg = bb.encode_prompts([PROMPT, "a bear is skiing down a snowy slope", ""]
                                      ).split(1)
    bb.free_text_encoder()
    z = bb.encode_clip(_clip(f, h, w))
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)).to(z)
    sample(bb, noise, tgt, 1, uncond=neg, guidance=guidance)  # warm-up (kernels, allocator)

    def timed(fn) -> tuple[float, float]:
        synchronize(device)
        reset_peak(device)
        t = time.perf_counter()
        with torch.no_grad():
            bb.decode(fn())
        synchronize(device)
        return time.perf_counter() - t, peak_memory_gib(device)

    edit_s, edit_gib = timed(lambda: sample(bb, noise, tgt, steps, uncond=neg,
                                            guidance=guidance))
    n_max = max(1, round(steps * FLOWEDIT_DEFAULTS["n_max"] / FLOWEDIT_DEFAULTS["steps"]))
    fe_s, fe_gib = timed(lambda: flow_edit(
        bb, z, src, tgt, neg, steps=steps, n_max=n_max, n_min=0, n_avg=1,
        source_guidance=FLOWEDIT_DEFAULTS["source_guidance"],
        target_guidance=FLOWEDIT_DEFAULTS["target_guidance"],
        generator=torch.Generator().manual_seed(0)))
    calls = steps * guided_passes(guidance)
    fe_calls = n_max * (guided_passes(FLOWEDIT_DEFAULTS["source_guidance"])
                        + guided_passes(FLOWEDIT_DEFAULTS["target_guidance"]))
    dev = _device_name(device)
    return [{"what": f"wan edit ({steps} CFG steps + decode)", "arch": arch, "frames": f,
             "size": f"{w}x{h}", "steps": steps, "s_per_call": edit_s / calls,
             "total_s": edit_s, "target_s": TARGETS["edit_50_s"], "peak_gib": edit_gib,
             "device": dev},
            {"what": f"wan FlowEdit ({n_max} of {steps} steps, 2 CFG velocities each)",
             "arch": arch, "frames": f, "size": f"{w}x{h}", "steps": n_max,
             "s_per_call": fe_s / fe_calls, "total_s": fe_s,
             "target_s": TARGETS["flowedit_s"], "peak_gib": fe_gib, "device": dev}]


def targets_line() -> str:
    t = TARGETS
    return (f"targets (issue 27, H100, 49x480x832): tune <= {t['tune_s_per_step']} s/step and "
            f"<= {t['tune_peak_gib']:.0f} GiB; edit (50 CFG steps) <= {t['edit_50_s']:.0f} s; "
            f"FlowEdit <= {t['flowedit_s']:.0f} s; DCT terms <= {t['dct_share']:.0%} of a step")


__all__ = ["TARGETS", "bench_sample", "bench_tune", "dct_share_row", "shape", "targets_line"]
