"""Where does the inflated U-Net's time go? Forward / train-step timings per variant (GPU).

python scripts/profile_forward.py [--frames 24] [--size 512] [--compile]
"""
import argparse
import time

import torch

from vcstudio.device import precision_for
from vcstudio.models.inflate import VideoDenoiser
from vcstudio.bench.pipelines import random_base


def timeit(fn, n=5, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--variants", default="2d,sparse,temporal,full")
    a = ap.parse_args()
    dev = torch.device("cuda")
    prec = precision_for(dev)
    base = random_base("sd15", dev, torch.bfloat16)
    f, s = a.frames, a.size // 8
    e = torch.randn(2, 77, 768, device=dev)
    x = torch.randn(2, 4, f, s, s, device=dev)
    t = torch.tensor([500], device=dev)
    for v in a.variants.split(","):
        m = VideoDenoiser(base.unet, temporal=v in ("temporal", "full")).to(dev)
        if v in ("2d", "temporal"):
            from diffusers.models.attention_processor import AttnProcessor2_0

            m.unet.set_attn_processor(AttnProcessor2_0())
        m.mark_trainable(("attn1.to_q", "attn2.to_q", "temporal"))
        m.cast_frozen(torch.bfloat16)
        for cl in ((False, True) if a.compile else (False,)):
            fwd = m
            if cl:
                fwd = torch.compile(m)
            with torch.no_grad(), prec.autocast():
                t_cfg = timeit(lambda: fwd(x, t, e))
            m.train()
            m.unet.enable_gradient_checkpointing()

            def step():
                with prec.autocast():
                    out = fwd(x[:1], t, e[:1])
                out.float().pow(2).mean().backward()

            torch.cuda.reset_peak_memory_stats()
            try:
                t_train = timeit(step, n=3, warm=1)
            except Exception as ex:  # report, keep profiling the other variants
                print("train failed:", type(ex).__name__, str(ex)[:300], flush=True)
                t_train = float("nan")
            peak = torch.cuda.max_memory_allocated() / 2**30
            m.unet.disable_gradient_checkpointing()
            try:
                torch.cuda.reset_peak_memory_stats()
                t_train_nock = timeit(step, n=3, warm=1)
                peak_nock = torch.cuda.max_memory_allocated() / 2**30
            except Exception:
                t_train_nock, peak_nock = float("nan"), float("nan")
            m.zero_grad(set_to_none=True)
            m.eval()
            print(f"{v:9s} compile={cl!s:5s} "
                  f"cfg_fwd={t_cfg:.3f}s train_ckpt={t_train:.3f}s ({peak:.1f}GiB) "
                  f"train_nockpt={t_train_nock:.3f}s ({peak_nock:.1f}GiB)", flush=True)
        del m
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
