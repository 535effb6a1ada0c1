"""Foreground / background masks of generated frames (consistency-tuning paper, eq. 9:
[m_fg, m_bg] = F1(r)).

F1 is the Segment Anything Model (segment-anything): a point or box prompt through
``SamPredictor``, or ``SamAutomaticMaskGenerator`` with a largest-salient-object rule when no
prompt is given. Without SAM weights at hand, :func:`grabcut_masks` is a classical fallback
(OpenCV GrabCut from a box or a point), labelled as such in the result.

Frames are uint8 (F, H, W, 3) RGB; masks are bool (F, H, W), True = foreground.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import torch

from ..errors import InputError, ModelNotFoundError
from ..models.cache import ModelCache, default_cache

SAM_CHECKPOINTS = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth",
                   "vit_h": "sam_vit_h_4b8939.pth"}
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# a Hub mirror of the official checkpoints under checkpoints/<file>; VCSTUDIO_SAM_HUB_REPO overrides
SAM_HUB_REPO = "ybelkada/segment-anything"
GRABCUT_LABEL = "grabcut (classical fallback, not SAM)"


@dataclass
class MaskResult:
    masks: np.ndarray  # bool (F, H, W), True = foreground
    method: str  # "sam-point", "sam-box", "sam-auto" or GRABCUT_LABEL
    scores: list[float] = field(default_factory=list)  # SAM's predicted IoU per frame

    @property
    def background(self) -> np.ndarray:
        return ~self.masks


# ----------------------------------------------------------------------------- loading

def sam_dir() -> Path:
    """Where SAM checkpoints are looked for: $VCSTUDIO_SAM_DIR or ~/.cache/vcstudio/sam."""
    return Path(os.environ.get("VCSTUDIO_SAM_DIR", Path.home() / ".cache" / "vcstudio" / "sam"))


def find_sam_checkpoint(model_type: str = "vit_b", checkpoint: Optional[str] = None) -> Path:
    """The checkpoint file for ``model_type``, or a ModelNotFoundError saying what to fetch where."""
    if model_type not in SAM_CHECKPOINTS:
        raise InputError(f"Unknown SAM model '{model_type}'; choose vit_b, vit_l or vit_h.")
    name = SAM_CHECKPOINTS[model_type]
    path = Path(checkpoint) if checkpoint else sam_dir() / name
    if path.is_file():
        return path
    why = ""
    if not checkpoint:  # the official file, mirrored on the Hub: fetched once into sam_dir()
        try:
            from huggingface_hub import hf_hub_download

            repo = os.environ.get("VCSTUDIO_SAM_HUB_REPO", SAM_HUB_REPO)
            got = Path(hf_hub_download(repo, f"checkpoints/{name}", local_dir=sam_dir()))
            if got.is_file():
                return got
        except Exception as e:  # offline, or the mirror is gone: say so, then the manual way
            why = f" (Hub download from {repo} failed: {type(e).__name__})"
    raise ModelNotFoundError(
        f"SAM checkpoint not found: {path}{why}. Download {name} from {SAM_URL}{name} and put it "
        f"in {sam_dir()} (or set VCSTUDIO_SAM_DIR / pass its path as the SAM checkpoint), or use "
        f"the classical GrabCut fallback (mask method 'grabcut').")


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    # SAM's official .pth files are plain tensor dicts: load them without unpickling code.
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_sam(checkpoint: Optional[str] = None, model_type: str = "vit_b", device=None,
             cache: ModelCache = default_cache, builder: Optional[Callable[[], torch.nn.Module]] = None):
    """Build SAM's architecture (``sam_model_registry[model_type]``) and load the checkpoint
    (.pth with weights_only, or .safetensors). ``builder`` replaces the registry entry (tests use
    it for a tiny SAM). Cached on (model_type, path, device)."""
    path = find_sam_checkpoint(model_type, checkpoint)
    device = torch.device(device or "cpu")

    def factory():
        if builder is None:
            from segment_anything import sam_model_registry
            sam = sam_model_registry[model_type](checkpoint=None)
        else:
            sam = builder()
        try:
            sam.load_state_dict(_read_state_dict(path))
        except (RuntimeError, ValueError, OSError) as e:
            raise InputError(f"{path} is not a {model_type} SAM checkpoint ({e}); check the "
                             f"model type (vit_b / vit_l / vit_h) matches the file.") from None
        return sam.eval().to(device)

    return cache.get(("sam", model_type, str(path.resolve()), str(device)), factory)


# ----------------------------------------------------------------------------- SAM

def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"Frames must be uint8 (F, H, W, 3) RGB; got {frames.dtype} {frames.shape}.")
    return frames


def salient_mask(records: Sequence[dict], shape: tuple[int, int], max_area: float = 0.85,
                 min_area: float = 0.005) -> Optional[dict]:
    """Largest-salient-object rule over automatic-generator records.

    A mask is background-like if it covers more than ``max_area`` of the frame or touches three
    or more frame borders; among the rest the largest (area x predicted IoU) wins. Falls back to
    the best-scored mask when every mask looks like background; None when there are none.
    """
    h, w = shape
    best, best_score, fallback = None, -1.0, None
    for r in records:
        seg = r["segmentation"]
        area = float(seg.sum()) / (h * w)
        if area < min_area:
            continue
        borders = int(seg[0].any()) + int(seg[-1].any()) + int(seg[:, 0].any()) + int(seg[:, -1].any())
        iou = float(r.get("predicted_iou", 1.0))
        if fallback is None or iou > float(fallback.get("predicted_iou", 1.0)):
            fallback = r
        if area > max_area or borders >= 3:
            continue
        score = area * iou
        if score > best_score:
            best, best_score = r, score
    return best if best is not None else fallback


class SamMasker:
    """Per-frame SAM masks with one prompt for the whole clip (point, box or automatic)."""

    def __init__(self, sam) -> None:
        from segment_anything import SamPredictor
        self.sam = sam
        self.predictor = SamPredictor(sam)

    @torch.no_grad()
    def _prompted(self, frames, point=None, box=None) -> MaskResult:
        frames = _check_frames(frames)
        masks, scores = [], []
        for f in frames:
            self.predictor.set_image(f)
            kw = {}
            if point is not None:
                kw["point_coords"] = np.asarray([point], dtype=np.float32)
                kw["point_labels"] = np.asarray([1])
            if box is not None:
                kw["box"] = np.asarray(box, dtype=np.float32)
            m, s, _ = self.predictor.predict(multimask_output=True, **kw)
            k = int(np.argmax(s))
            masks.append(m[k].astype(bool))
            scores.append(float(s[k]))
        self.predictor.reset_image()
        return MaskResult(np.stack(masks), "sam-point" if box is None else "sam-box", scores)

    def point(self, frames: np.ndarray, xy: tuple[float, float]) -> MaskResult:
        """Foreground = the object under pixel ``xy`` = (x, y)."""
        return self._prompted(frames, point=xy)

    def box(self, frames: np.ndarray, box: tuple[float, float, float, float]) -> MaskResult:
        """Foreground = the object inside ``box`` = (x0, y0, x1, y1)."""
        return self._prompted(frames, box=box)

    @torch.no_grad()
    def auto(self, frames: np.ndarray, **generator_kwargs) -> MaskResult:
        """No prompt: SamAutomaticMaskGenerator + :func:`salient_mask` on each frame."""
        from segment_anything import SamAutomaticMaskGenerator
        gen = SamAutomaticMaskGenerator(self.sam, **generator_kwargs)
        frames = _check_frames(frames)
        masks, scores = [], []
        for f in frames:
            rec = salient_mask(gen.generate(f), f.shape[:2])
            masks.append(np.zeros(f.shape[:2], bool) if rec is None else rec["segmentation"].astype(bool))
            scores.append(0.0 if rec is None else float(rec.get("predicted_iou", 0.0)))
        return MaskResult(np.stack(masks), "sam-auto", scores)


# ----------------------------------------------------------------------------- GrabCut

def grabcut_mask(frame: np.ndarray, box: Optional[Sequence[float]] = None,
                 point: Optional[Sequence[float]] = None, iters: int = 5,
                 seed: int = 0) -> np.ndarray:
    """Classical foreground mask (OpenCV GrabCut). Initialised from a box (x0, y0, x1, y1), or
    from a point (a disc of probable foreground around it, the frame's 4% rim as background), or
    from a centred box covering 80% of the frame when neither is given."""
    img = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    if point is not None and box is None:
        mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        r = max(2, int(0.1 * min(h, w)))
        cv2.circle(mask, (int(point[0]), int(point[1])), r, int(cv2.GC_PR_FGD), -1)
        cv2.circle(mask, (int(point[0]), int(point[1])), max(1, r // 3), int(cv2.GC_FGD), -1)
        rim = max(1, int(0.04 * min(h, w)))
        mask[:rim], mask[-rim:], mask[:, :rim], mask[:, -rim:] = (cv2.GC_BGD,) * 4
        cv2.grabCut(img, mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    else:
        if box is None:
            box = (0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, x1), min(h, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise InputError(f"The box {tuple(box)} is empty inside a {w}x{h} frame.")
        mask = np.zeros((h, w), np.uint8)
        cv2.grabCut(img, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iters, cv2.GC_INIT_WITH_RECT)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def grabcut_masks(frames: np.ndarray, box=None, point=None, iters: int = 5) -> MaskResult:
    frames = _check_frames(frames)
    masks = np.stack([grabcut_mask(f, box, point, iters) for f in frames])
    return MaskResult(masks, GRABCUT_LABEL)


# ----------------------------------------------------------------------------- one entry point

def foreground_masks(frames: np.ndarray, method: str = "sam", point=None, box=None,
                     checkpoint: Optional[str] = None, model_type: str = "vit_b", device=None,
                     fallback: bool = False, cache: ModelCache = default_cache,
                     builder=None, **auto_kwargs) -> MaskResult:
    """Masks for a clip: ``method`` "sam" (point / box / automatic when neither is given) or
    "grabcut". With ``fallback=True`` a missing SAM checkpoint falls back to GrabCut (the result's
    ``method`` says so); otherwise the ModelNotFoundError names the file and where to put it."""
    if method == "grabcut":
        return grabcut_masks(frames, box, point)
    if method != "sam":
        raise InputError(f"Unknown mask method '{method}'; use 'sam' or 'grabcut'.")
    try:
        sam = load_sam(checkpoint, model_type, device, cache, builder)
    except ModelNotFoundError:
        if not fallback:
            raise
        return grabcut_masks(frames, box, point)
    masker = SamMasker(sam)
    if box is not None:
        return masker.box(frames, box)
    if point is not None:
        return masker.point(frames, point)
    return masker.auto(frames, **auto_kwargs)
