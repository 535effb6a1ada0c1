"""Structure conditions per frame: canny edges, depth, pose, or an uploaded condition video.

Every function takes and returns uint8 (F, H, W, 3) RGB frames (DESIGN: frames at the edges),
at the size and crop the clip was tuned at -- the conditions are computed on the frames the model
saw, so an edge lies where the object was in the tuned clip. ControlNet (Zhang et al. 2023, sec.
3.2) and T2I-Adapter (Mou et al. 2023, sec. 3.2) take these as 3-channel images in [0, 1].

* canny: OpenCV's Canny (hysteresis thresholds ``low``/``high``), works offline;
* depth: a transformers depth-estimation model (DPT, Depth Anything, ...) by hub id or folder,
  only from local files (no download), refused with what to download when absent;
* pose: an OpenPose-style detector from the optional ``controlnet_aux`` package, refused with
  what to install when absent;
* video: a condition video made elsewhere (e.g. pose frames), resampled to the clip's frame count
  and fitted to its size with the clip's own crop.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InputError, ModelNotFoundError

KINDS = ("canny", "depth", "pose", "video")
LABELS = {"canny": "canny edges (OpenCV)", "depth": "depth (transformers depth model)",
          "pose": "pose (OpenPose, needs controlnet_aux)", "video": "uploaded condition video"}
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
POSE_PACKAGE = "controlnet-aux"  # pip name; imports as controlnet_aux
POSE_WEIGHTS = "lllyasviel/Annotators"


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"Unknown condition {kind!r}; choose one of {', '.join(KINDS)}.")


def canny(frames: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """OpenCV Canny edges of each frame, as white-on-black RGB (what SD canny ControlNets and
    adapters were trained on)."""
    import cv2

    if not 0 <= low <= high:
        raise InputError(f"Canny thresholds need 0 <= low <= high, got {low} and {high}.")
    out = np.empty(frames.shape[:3], np.uint8)
    for i, f in enumerate(frames):
        out[i] = cv2.Canny(np.ascontiguousarray(f), low, high)
    return np.repeat(out[..., None], 3, axis=-1)


def depth(frames: np.ndarray, model: str = "", device=None) -> np.ndarray:
    """Per-frame depth from a transformers depth-estimation model found locally (hub cache or
    folder), normalised per frame to 0..255 (near = bright, as MiDaS/DPT output disparity)."""
    import torch

    model = model or DEFAULT_DEPTH_MODEL
    try:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        proc = AutoImageProcessor.from_pretrained(model, local_files_only=True)
        net = AutoModelForDepthEstimation.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError, ImportError):
        raise ModelNotFoundError(
            f"Depth conditions need the depth model {model} on this machine: download it with "
            f"`hf download {model}` (or give a local folder as depth_model), or upload depth "
            "frames as a condition video.") from None
    net = net.to(device or "cpu").eval()
    h, w = frames.shape[1:3]
    out = np.empty(frames.shape[:3], np.uint8)
    with torch.no_grad():
        for i, f in enumerate(frames):
            inp = proc(images=f, return_tensors="pt").to(net.device)
            d = net(**inp).predicted_depth[:, None].float()
            d = torch.nn.functional.interpolate(d, size=(h, w), mode="bicubic",
                                                align_corners=False)[0, 0]
            d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8)
            out[i] = (d * 255).round().clamp(0, 255).byte().cpu().numpy()
    return np.repeat(out[..., None], 3, axis=-1)


def pose(frames: np.ndarray) -> np.ndarray:
    """OpenPose skeletons per frame (controlnet_aux's detector, weights from the local hub
    cache)."""
    try:
        from controlnet_aux import OpenposeDetector
    except ImportError:
        raise ModelNotFoundError(
            f"Pose conditions need the optional {POSE_PACKAGE} package: `pip install "
            f"{POSE_PACKAGE}` and `hf download {POSE_WEIGHTS}`, or upload pose frames as a "
            "condition video (--control video --control-video PATH).") from None
    try:
        det = OpenposeDetector.from_pretrained(POSE_WEIGHTS)
    except Exception:  # noqa: BLE001 - any loader failure means the weights are not at hand
        raise ModelNotFoundError(f"Pose conditions need the {POSE_WEIGHTS} weights: download "
                                 f"them with `hf download {POSE_WEIGHTS}`.") from None
    from PIL import Image

    h, w = frames.shape[1:3]
    out = [np.asarray(det(Image.fromarray(f), output_type="pil").convert("RGB")
                      .resize((w, h), Image.BILINEAR)) for f in frames]
    return np.stack(out).astype(np.uint8)


def resample_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames spread evenly over ``frames`` (nearest frame at each position; the
    first and last are kept): a condition video of any length lines up with the clip."""
    n = len(frames)
    if n == 0:
        raise InputError("The condition video has no frames; upload one with at least one.")
    if n == count:
        return frames
    idx = np.rint(np.linspace(0, n - 1, count)).astype(int) if count > 1 else np.zeros(1, int)
    return frames[idx]


def condition_video(path: str, count: int, width: int, height: int, resize: str = "crop",
                    crop: str = "center") -> np.ndarray:
    """An uploaded condition video -> ``count`` frames at width x height, fitted like the clip
    (same resize mode and crop position)."""
    from ..io import fit_frames, read_video

    if not path:
        raise InputError("A 'video' condition needs its condition video: pass --control-video "
                         "PATH (or upload one in the Structure panel).")
    raw = read_video(path)
    return fit_frames(resample_frames(raw, count), width, height, resize, crop)


def extract(kind: str, frames: np.ndarray, low: int = 100, high: int = 200,
            depth_model: str = "", device=None) -> np.ndarray:
    """The ``kind`` condition of ``frames`` (uint8 F,H,W,3) -> uint8 (F,H,W,3)."""
    check_kind(kind)
    if kind == "canny":
        return canny(frames, low, high)
    if kind == "depth":
        return depth(frames, depth_model, device)
    if kind == "pose":
        return pose(frames)
    return frames  # "video": the frames are the condition


def source_for(cfg, clip: Optional[np.ndarray], count: int, width: int, height: int,
               resize: str = "crop", crop: str = "center") -> np.ndarray:
    """The frames a condition ``cfg`` (ControlConfig) is computed from: its own ``video``
    (resampled and fitted) or ``clip`` (the tuned clip, already at the tuned size and crop)."""
    if cfg.video:
        return condition_video(cfg.video, count, width, height, resize, crop)
    if cfg.kind == "video":
        condition_video("", count, width, height)  # raises the one-line message
    if clip is None or len(clip) != count:
        raise InputError(f"The {cfg.kind} condition needs a source of {count} frames: give it "
                         "a video (--control-video PATH) as long as the output.")
    if clip.shape[1:3] != (height, width):  # another stage size (long video refinement)
        from ..io import fit_frames

        clip = fit_frames(clip, width, height, resize, crop)
    return clip


def conditions_for(cfg, clip: Optional[np.ndarray], count: int, width: int, height: int,
                   resize: str = "crop", crop: str = "center", device=None) -> np.ndarray:
    """uint8 (count, height, width, 3) condition frames for one ControlConfig."""
    check_kind(cfg.kind)
    src = source_for(cfg, clip, count, width, height, resize, crop)
    return extract(cfg.kind, src, cfg.low, cfg.high, cfg.depth_model, device)
