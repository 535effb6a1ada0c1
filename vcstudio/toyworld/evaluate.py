"""The embedded model's acceptance evaluation (issue 3).

* Text-to-image: 200 held-out captions ('a {colour} {shape} {background}', combinations never
  trained on), 50 DDIM steps with classifier-free guidance, read by the classical checker:
  colour agreement (target >= 85%) and shape agreement (target >= 70%).
* Toy CLIP: for held-out renders, the true caption must rank first among 10 candidates (the
  truth + 9 other world captions drawn at random; target >= 80%).
Sampling uses a plain diffusers ``StableDiffusionPipeline.from_pretrained`` on the folder, the
same load path a user takes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..device import pick_device
from ..errors import ModelNotFoundError
from ..progress import Event, ProgressFn, null_progress
from .checker import detect
from .render import render_images
from .world import combos, held_out_prompts, random_scene, short_caption

# the demo model's acceptance targets on held-out captions
TARGETS = {"colour_acc": 0.85, "shape_acc": 0.70, "background_acc": 0.90, "clip_top1": 0.80}


def _need(folder, what: str) -> Path:
    p = Path(folder)
    if not p.is_dir():
        raise ModelNotFoundError(f"No {what} at {p}. Train it first: vcstudio toyworld train --out ...")
    return p


def load_toy_pipeline(folder, device=None):
    """The toy SD folder as a diffusers StableDiffusionPipeline (fp32 on CPU, fp16 on CUDA)."""
    from diffusers import StableDiffusionPipeline

    dev = pick_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(str(_need(folder, "toy model")), dtype=dtype,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def eval_text_to_image(folder, n: int = 200, steps: int = 50, guidance: float = 5.0, seed: int = 0,
                       device=None, batch: int = 50, progress: ProgressFn = null_progress,
                       samples_out: Optional[str] = None) -> dict:
    pipe = load_toy_pipeline(folder, device)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompts = held_out_prompts(n)
    rows = []
    images = []
    for i in range(0, n, batch):
        chunk = prompts[i:i + batch]
        g = torch.Generator(pipe.device).manual_seed(seed + i)
        out = pipe([p for p, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                   height=size, width=size, generator=g, output_type="np").images
        imgs = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        images.append(imgs)
        for (prompt, (shape, colour, bg)), img in zip(chunk, imgs):
            d = detect(img)
            rows.append({"prompt": prompt, "shape": shape, "colour": colour, "background": bg,
                         "got_shape": d.shape, "got_colour": d.colour, "got_background": d.background})
        progress(Event(min(i + batch, n), n, "text-to-image eval", stage="eval"))
    res = {
        "n": n, "steps": steps, "guidance": guidance,
        "colour_acc": float(np.mean([r["got_colour"] == r["colour"] for r in rows])),
        "shape_acc": float(np.mean([r["got_shape"] == r["shape"] for r in rows])),
        "background_acc": float(np.mean([r["got_background"] == r["background"] for r in rows])),
        "rows": rows,
    }
    if samples_out:
        out = Path(samples_out)
        out.mkdir(parents=True, exist_ok=True)
        allimg = np.concatenate(images)
        k = int(np.ceil(np.sqrt(len(allimg))))
        pad = np.zeros((k * k - len(allimg),) + allimg.shape[1:], np.uint8)
        grid = np.concatenate([allimg, pad]).reshape(k, k, size, size, 3).transpose(0, 2, 1, 3, 4)
        import imageio.v3 as iio

        iio.imwrite(out / "heldout_samples.png", grid.reshape(k * size, k * size, 3))
    return res


@torch.no_grad()
def eval_clip(folder, n: int = 200, candidates: int = 10, seed: int = 0, device=None) -> dict:
    """Top-1 of the true caption among ``candidates`` for held-out renders."""
    from transformers import CLIPModel, CLIPProcessor

    dev = pick_device(device)
    p = _need(folder, "toy CLIP")
    model = CLIPModel.from_pretrained(str(p), dtype=torch.float32).to(dev).eval()
    proc = CLIPProcessor.from_pretrained(str(p))
    size = model.config.vision_config.image_size
    rng = np.random.default_rng(seed)
    held = combos("heldout")
    everything = combos("all")
    hits = 0
    for i in range(n):
        combo = held[i % len(held)]
        scene = random_scene(rng, combo=combo)
        img = render_images([scene], size)[0]
        truth = short_caption(*combo)
        others = [everything[j] for j in rng.permutation(len(everything)) if everything[j] != combo]
        caps = [truth] + [short_caption(*c) for c in others[:candidates - 1]]
        inputs = proc(text=caps, images=[img], return_tensors="pt", padding="max_length",
                      max_length=proc.tokenizer.model_max_length).to(dev)
        logits = model(**inputs).logits_per_image[0]
        hits += int(int(logits.argmax()) == 0)
    return {"n": n, "candidates": candidates, "top1": hits / n}


def run_evaluation(model_dir, clip_dir, out: Optional[str] = None, n: int = 200, steps: int = 50,
                   guidance: float = 5.0, seed: int = 0, device=None,
                   progress: ProgressFn = null_progress, clip: bool = True) -> dict:
    t2i = eval_text_to_image(model_dir, n, steps, guidance, seed, device, progress=progress,
                             samples_out=out)
    clip = eval_clip(clip_dir, n, seed=seed, device=device) if clip else {"top1": None}
    summary = {"colour_acc": t2i["colour_acc"], "shape_acc": t2i["shape_acc"],
               "background_acc": t2i["background_acc"], "clip_top1": clip["top1"],
               "targets": TARGETS,
               "n": n, "steps": steps, "guidance": guidance, "seed": seed}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "eval.json").write_text(json.dumps({"summary": summary, "t2i": t2i}, indent=1))
    return summary
