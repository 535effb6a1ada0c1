"""CLIP text alignment, frame consistency (adjacent / all-pairs) and diversity.

Each score is split in two: ``*_from_embeddings`` (the math, testable on given vectors) and a
function over uint8 frames that embeds with a :class:`~vcstudio.models.clip.ClipEncoder`.
Embeddings are L2-normalised, so a dot product is the cosine.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .result import MetricResult, pad_front

ALIGN_DEF = ("CLIP text alignment: mean over frames of 100*cos(image, text), no clamp "
             "(Tune-A-Video / LOVEU-TGVE evaluation)")
ADJ_DEF = ("CLIP frame consistency, adjacent: 100 * mean cos of consecutive frames "
           "(FateZero Tem-Con, DCT Table 1)")
ALL_DEF = ("CLIP frame consistency, all-pairs: 100 * mean cos over ordered pairs i != j "
           "(LOVEU-TGVE Tune-A-Video evaluation)")
DIV_DEF = "diversity: mean pairwise cosine distance of video embeddings (mean of frames) (DCT)"


def _unit(e) -> torch.Tensor:
    e = torch.as_tensor(e, dtype=torch.float32)
    return torch.nn.functional.normalize(e, dim=-1)


def text_alignment_from_embeddings(image_emb, text_emb) -> np.ndarray:
    """Per-frame 100 * cos(image_t, text); the video score is their mean (no clamp at 0)."""
    img, txt = _unit(image_emb), _unit(text_emb).reshape(1, -1)
    return (100.0 * (img @ txt.T)[:, 0]).numpy().astype(np.float64)


def adjacent_consistency_from_embeddings(emb) -> np.ndarray:
    """100 * cos(e_{t-1}, e_t) for t = 1..T-1 (T-1 values; the video score is their mean)."""
    e = _unit(emb)
    return (100.0 * (e[:-1] * e[1:]).sum(-1)).numpy().astype(np.float64)


def all_pairs_consistency_from_embeddings(emb) -> float:
    """100 * mean over ordered pairs i != j of cos(e_i, e_j)."""
    e = _unit(emb)
    n = e.shape[0]
    if n < 2:
        return float("nan")
    sim = e @ e.T
    return float(100.0 * (sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def all_pairs_running(emb) -> list[float]:
    """All-pairs consistency of the first t+1 frames, for t = 0..T-1 (NaN at t = 0): the value a
    stream shows after each frame."""
    e = _unit(emb)
    sim = e @ e.T
    out, total = [float("nan")], 0.0
    for t in range(1, e.shape[0]):
        total += 2.0 * float(sim[t, :t].sum())  # both orders of the new pairs
        out.append(100.0 * total / ((t + 1) * t))
    return out


def diversity_from_embeddings(video_embs: Sequence) -> float:
    """Mean over pairs of videos of 1 - cos(v_a, v_b), v = mean of that video's frame embeddings."""
    vs = torch.stack([_unit(v).mean(0) for v in video_embs])
    vs = torch.nn.functional.normalize(vs, dim=-1)
    n = vs.shape[0]
    if n < 2:
        return float("nan")
    d = 1.0 - vs @ vs.T
    return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))


# --- over frames -------------------------------------------------------------------------------

def _encoder(encoder):
    if encoder is None:
        from ..models.clip import load_default_clip_encoder

        encoder = load_default_clip_encoder()
    return encoder


def clip_text_alignment(frames: np.ndarray, prompt: str, encoder=None,
                        image_emb: Optional[torch.Tensor] = None) -> MetricResult:
    enc = _encoder(encoder)
    img = enc.encode_images(frames) if image_emb is None else image_emb
    vals = text_alignment_from_embeddings(img.cpu(), enc.encode_text([prompt])[0].cpu())
    return MetricResult("clip_text", float(vals.mean()), list(vals), enc.name, ALIGN_DEF, True)


def frame_consistency(frames: np.ndarray, variant: str = "adjacent", encoder=None,
                      image_emb: Optional[torch.Tensor] = None) -> MetricResult:
    """``variant`` "adjacent" or "all_pairs"; per-frame values are the adjacent cosines or the
    running all-pairs score."""
    enc = _encoder(encoder)
    img = (enc.encode_images(frames) if image_emb is None else image_emb).cpu()
    n = img.shape[0]
    if n < 2:
        return MetricResult.too_few(f"consistency_{variant}", 2)
    if variant == "adjacent":
        vals = adjacent_consistency_from_embeddings(img)
        return MetricResult("consistency_adjacent", float(vals.mean()), pad_front(vals, n),
                            enc.name, ADJ_DEF, True)
    if variant == "all_pairs":
        return MetricResult("consistency_all_pairs", all_pairs_consistency_from_embeddings(img),
                            all_pairs_running(img), enc.name, ALL_DEF, True)
    raise ValueError(f"unknown consistency variant {variant!r}")


def clip_diversity(videos: Sequence[np.ndarray], encoder=None) -> MetricResult:
    """Diversity across several videos (e.g. one per prompt or seed)."""
    enc = _encoder(encoder)
    embs = [enc.encode_images(v).cpu() for v in videos]
    return MetricResult("diversity", diversity_from_embeddings(embs), [], enc.name, DIV_DEF, True)
