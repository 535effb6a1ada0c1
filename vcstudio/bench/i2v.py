"""``vcstudio bench i2v``: seconds per VCD reward step and peak memory of an image-to-video
backbone on its full-size architecture with random weights (SVD, LTX-Video, Wan2.1 I2V with
and without the step cache); cli/i2v.py parses the flags and prints the table."""
from __future__ import annotations

import time

import numpy as np


def _bench_backbone(args, dev, prec):
    if args.backbone == "wan":
        from ..pipelines.i2v.wan import WanI2VBackbone

        if args.tiny:
            import tempfile

            from ..models.wan import build_tiny_wan_i2v, load_wan

            with tempfile.TemporaryDirectory(prefix="vcs_bench_wan_") as d:
                parts = load_wan(build_tiny_wan_i2v(d), "i2v", dev, prec.frozen_dtype, cache=None)
            parts.source = "tiny Wan2.1 I2V (test architecture)"
        else:
            from ..models.wan import full_size_wan

            parts = full_size_wan(True, dev, prec.frozen_dtype)
        return WanI2VBackbone(parts, precision=prec)
    if args.backbone == "ltx":
        from ..models.ltx import full_size_ltx
        from ..pipelines.i2v.ltx import LTXBackbone

        return LTXBackbone(full_size_ltx(device=dev, dtype=prec.frozen_dtype), precision=prec)
    from ..models.svd import full_size_svd
    from ..pipelines.i2v.backbones import SVDBackbone

    return SVDBackbone(full_size_svd(args.frames, device=dev, dtype=prec.frozen_dtype),
                       precision=prec)


def _time_reward_steps(bb, vcd, opt, image, args, dev) -> tuple[list, list, list]:
    """(seconds, sampling seconds, reward) of each of ``args.reward_steps`` VCD reward steps
    (after one warm-up step); sampling = conditioning + the denoising loop."""
    import torch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    n = args.frames
    times, sampling, losses = [], [], []
    for step in range(args.reward_steps + 1):
        sync()
        t = time.time()
        g = torch.Generator().manual_seed(step)
        with torch.no_grad():
            cond = bb.encode(image, n, args.height, args.width, generator=g, prompt="a video")
        lat = bb.denoise(cond, args.inference_steps, generator=g, grad_steps=args.grad_steps)
        sync()
        t_sample = time.time() - t
        subset = list(range(n - args.decode_frames, n))
        frames = bb.decode(lat, subset, generator=g)
        loss = vcd(frames, image=cond.image, positions=[i + 1 for i in subset], n_frames=n).mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if step:  # step 0 warms up kernels and allocator
            times.append(time.time() - t)
            sampling.append(t_sample)
            losses.append(float(loss.detach()))
    return times, sampling, losses


def bench_i2v(args) -> dict:
    """Seconds per VCD reward step + peak memory on a full-size architecture (random weights);
    for Wan with and without the step cache, beside the architecture's estimate. ``args``: the
    flags of ``vcstudio bench i2v`` (cli/i2v.py); the model's own sizes fill those not given."""
    import torch

    from ..device import peak_memory_gib, pick_device, precision_for, reset_peak
    from ..methods.vcd import VCD
    from ..models.lora import add_lora, lora_targets_for
    from ..models.vgg import VGG19Features
    from ..pipelines.i2v.backbones import OWN_SIZES

    dev = pick_device(args.device)
    prec = precision_for(dev)
    d_frames, d_height, d_width = OWN_SIZES[args.backbone]
    if args.backbone == "wan" and args.tiny:
        d_frames, d_height, d_width = 9, 32, 32
    args.frames, args.height, args.width = (args.frames or d_frames, args.height or d_height,
                                            args.width or d_width)
    args.inference_steps = args.inference_steps or (30 if args.backbone == "wan" else 25)
    bb = _bench_backbone(args, dev, prec)
    params = add_lora(bb.denoiser, args.lora_rank, targets=lora_targets_for(bb.name))
    if not args.no_checkpointing:
        bb.denoiser.enable_gradient_checkpointing()
    vcd = VCD(VGG19Features(random_weights=True).to(dev, prec.frozen_dtype), size=args.vcd_size)
    image = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    caches = [None]
    if args.backbone == "wan" and args.step_cache is not None and args.step_cache >= 0:
        caches.append(args.step_cache)
    start = [p.detach().clone() for p in params]  # every row starts from the same LoRA
    rows = []
    for thr in caches:
        if args.backbone == "wan":
            bb.set_step_cache(thr)
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
        opt = torch.optim.AdamW(params, lr=2e-4, fused=dev.type == "cuda")
        reset_peak(dev)
        times, sampling, losses = _time_reward_steps(bb, vcd, opt, image, args, dev)
        stats = bb.cache.stats if getattr(bb, "cache", None) is not None else None
        rows.append({"step_cache": thr, "sec_per_reward_step": float(np.mean(times)),
                     "sampling_s": float(np.mean(sampling)), "reward_vcd": losses,
                     "peak_mem_gib": peak_memory_gib(dev),
                     "skipped_share": stats.skip_share if stats else 0.0})
    res = {"bench": "i2v reward step (VCD, LoRA)", "backbone": bb.name, "device": str(dev),
           "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "architecture": getattr(getattr(bb, "parts", None), "source", bb.name),
           "frames": args.frames, "height": args.height, "width": args.width,
           "inference_steps": args.inference_steps, "grad_steps": args.grad_steps,
           "decode_frames": args.decode_frames, "lora_rank": args.lora_rank,
           "checkpointing": not args.no_checkpointing, "precision": str(prec.autocast_dtype),
           "lora_params": sum(p.numel() for p in params), "rows": rows,
           # the first row's figures under the old keys (scripts read them)
           "sec_per_reward_step": rows[0]["sec_per_reward_step"],
           "peak_mem_gib": rows[0]["peak_mem_gib"]}
    if len(rows) > 1:
        a, b = rows
        res["step_cache_speedup"] = a["sec_per_reward_step"] / b["sec_per_reward_step"]
        res["step_cache_sampling_speedup"] = a["sampling_s"] / b["sampling_s"]
        # the same seeds from the same LoRA: how far the cached reward is from the uncached
        res["step_cache_reward_rel_diff"] = float(np.mean(
            [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a["reward_vcd"], b["reward_vcd"])]))
    if args.backbone == "wan" and not args.tiny:
        from ..models.wan import estimate as we

        cfg = we.transformer_config("Wan2.1-Fun-1.3B-InP")
        est = we.reward_step(cfg, 25, 272, 368, 30, 1, 2, "cuda:H100")
        res["estimate_paper_setting_h100"] = {
            "sec_per_reward_step": round(est.seconds, 2), "peak_gib": round(est.peak_gib, 1),
            "how": "uncalibrated: FLOPs at 400 TFLOP/s, counted activations; not measured"}
    return res
