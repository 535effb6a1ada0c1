"""Video and image read / validate / sample / resize / write.

Frames at this edge are uint8 numpy arrays (F, H, W, 3), RGB. Every failure a user can cause
raises :class:`~vcstudio.errors.InputError` with a message that says what to do.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Limits
from ..errors import InputError
from .atomic import atomic_path

VIDEO_EXTS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".gif"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.ndim != 3:
        raise InputError(f"Unexpected frame shape {frame.shape}; expected H x W x channels.")
    if frame.shape[-1] == 4:
        frame = frame[..., :3]
    elif frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.max() <= 1.0:
            frame = frame * 255.0
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def _check_size(h: int, w: int, limits: Limits, what: str) -> None:
    if min(h, w) < limits.min_side or max(h, w) > 4 * limits.max_side:
        raise InputError(f"{what} has resolution {w}x{h}; supported sizes are "
                         f"{limits.min_side}..{4 * limits.max_side} pixels per side.")


def read_image(path: str | Path, limits: Limits = Limits()) -> np.ndarray:
    """One image file -> uint8 (H, W, 3)."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image not found: {path}")
    try:
        img = _as_rgb(iio.imread(path))
    except InputError:
        raise
    except Exception as e:  # pillow raises many types for broken files
        raise InputError(f"Could not read {path.name} as an image ({type(e).__name__}). "
                         "Use a PNG or JPEG file.") from None
    _check_size(img.shape[0], img.shape[1], limits, path.name)
    return img


def _frame_indices(total: int, start: int, stride: int, count: Optional[int]) -> list[int]:
    if stride < 1:
        raise InputError(f"Frame stride must be >= 1, got {stride}.")
    if start < 0:
        raise InputError(f"Start frame must be >= 0, got {start}.")
    idx = list(range(start, total, stride))
    if count is not None:
        if count < 1:
            raise InputError(f"Frame count must be >= 1, got {count}.")
        if len(idx) < count:
            raise InputError(
                f"The clip has {total} frames; starting at {start} with stride {stride} gives "
                f"only {len(idx)} of the {count} frames asked for. Lower the frame count, the "
                f"stride or the start (at most {max(0, (total - 1 - start) // stride + 1)} "
                "frames fit with these settings).")
        idx = idx[:count]
    return idx


def _read_folder(path: Path, limits: Limits) -> list[np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"The folder {path} holds no image files ({', '.join(sorted(IMAGE_EXTS))}).")
    if len(files) > limits.max_source_frames:
        raise InputError(f"The folder holds {len(files)} images; at most "
                         f"{limits.max_source_frames} are accepted.")
    return [read_image(f, limits) for f in files]


def read_video(path: str | Path, start: int = 0, stride: int = 1, count: Optional[int] = None,
               limits: Limits = Limits()) -> np.ndarray:
    """Read frames ``start, start+stride, ...`` (``count`` of them, or all) -> uint8 (F,H,W,3).

    Accepts mp4/webm/mov/avi/mkv/gif files (through imageio's ffmpeg/pillow plugins) and folders
    of images (sorted by name).
    """
    path = Path(path)
    if path.is_dir():
        frames = _read_folder(path, limits)
        idx = _frame_indices(len(frames), start, stride, count)
        return np.stack([frames[i] for i in idx])
    if not path.is_file():
        raise InputError(f"Video not found: {path}")
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        raise InputError(f"{path.name} is a single image; give a video file or a folder of frames.")
    if ext not in VIDEO_EXTS:
        raise InputError(f"{path.name} is not a supported video type; use one of "
                         f"{', '.join(sorted(VIDEO_EXTS))}.")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")
    if path.stat().st_size > limits.max_upload_mb * 2**20:
        raise InputError(f"{path.name} is larger than {limits.max_upload_mb:.0f} MB.")
    frames = _decode(path, start, stride, count, limits)
    if not frames:
        raise InputError(f"{path.name} holds no frames.")
    return np.stack(frames)


def _decode(path: Path, start: int, stride: int, count: Optional[int], limits: Limits):
    import imageio.v2 as iio2

    plugin = "GIF-PIL" if path.suffix.lower() == ".gif" else "FFMPEG"
    try:
        reader = iio2.get_reader(str(path), format=plugin)
    except Exception as e:
        raise InputError(f"Could not open {path.name} as a video ({_short(e)}). It may be "
                         "corrupt or use a codec ffmpeg cannot decode; re-encode it as H.264 "
                         "mp4.") from None
    frames: list[np.ndarray] = []
    total = 0
    try:
        for i, frame in enumerate(reader):
            total = i + 1
            if total > limits.max_source_frames:
                raise InputError(f"{path.name} has more than {limits.max_source_frames} frames;"
                                 " trim it first.")
            if i == 0:
                frame0 = _as_rgb(frame)
                _check_size(frame0.shape[0], frame0.shape[1], limits, path.name)
            if i >= start and (i - start) % stride == 0:
                frames.append(_as_rgb(frame))
                if count is not None and len(frames) == count:
                    break
    except InputError:
        raise
    except Exception as e:
        if not frames:
            raise InputError(f"Could not decode {path.name} ({_short(e)}). It may be corrupt or "
                             "use an unsupported codec; re-encode it as H.264 mp4.") from None
        # a truncated file: keep the frames that decoded, the count check below says the rest
    finally:
        reader.close()
    if total == 0:
        raise InputError(f"{path.name} holds no frames.")
    if count is not None and len(frames) < count:
        _frame_indices(total, start, stride, count)  # raises with the numbers
    return frames


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return (msg[-1] if msg else type(e).__name__)[:200]


def resize_frames(frames: np.ndarray, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """Resize to (height, width) keeping the aspect ratio: center ``crop`` or ``pad`` (black).

    Sizes must be multiples of 8 (the VAE's downsampling). Never stretches.
    """
    import cv2

    if width % 8 or height % 8:
        raise InputError(f"Width and height must be multiples of 8; got {width}x{height}.")
    if mode not in ("crop", "pad"):
        raise InputError(f"Resize mode must be 'crop' or 'pad', got {mode!r}.")
    f, h, w, _ = frames.shape
    scale = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = np.zeros((f, height, width, 3), np.uint8)
    for i in range(f):
        r = cv2.resize(frames[i], (nw, nh), interpolation=interp)
        if mode == "crop":
            y0, x0 = (nh - height) // 2, (nw - width) // 2
            out[i] = r[y0:y0 + height, x0:x0 + width]
        else:
            y0, x0 = (height - nh) // 2, (width - nw) // 2
            out[i, y0:y0 + nh, x0:x0 + nw] = r
    return out


def load_clip(path: str | Path, n_frames: int, start: int = 0, stride: int = 1,
              width: int = 512, height: int = 512, resize: str = "crop",
              limits: Limits = Limits()) -> np.ndarray:
    """Read, validate, sample and resize a clip in one call -> uint8 (F, height, width, 3)."""
    if n_frames > limits.max_frames:
        raise InputError(f"{n_frames} frames asked for; the limit here is {limits.max_frames}.")
    for name, v in (("width", width), ("height", height)):
        if not limits.min_side <= v <= limits.max_side:
            raise InputError(f"The {name} {v} is outside {limits.min_side}..{limits.max_side}.")
    frames = read_video(path, start, stride, n_frames, limits)
    return resize_frames(frames, width, height, resize)


def clip_hash(frames: np.ndarray) -> str:
    """SHA-256 of the exact frames (shape included): identifies the clip a run was tuned on."""
    h = hashlib.sha256(str(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """H.264 mp4 (yuv420p, so browsers play it), written atomically."""
    import imageio.v2 as iio2

    path = Path(path)
    frames = _even(frames)
    with atomic_path(path) as tmp:
        w = iio2.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264",
                            pixelformat="yuv420p", macro_block_size=1,
                            ffmpeg_params=["-crf", "18"], ffmpeg_log_level="error")
        for fr in frames:
            w.append_data(fr)
        w.close()
    return path


def _even(frames: np.ndarray) -> np.ndarray:
    # yuv420p needs even sides; pad one pixel rather than resample
    f, h, w, c = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """Looping GIF, written atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        imgs = [Image.fromarray(f) for f in frames]
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:],
                     duration=int(round(1000 / fps)), loop=0)
    return path


def write_frames(frames: np.ndarray, folder: str | Path) -> Path:
    """PNG per frame (frame_0000.png, ...)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i:04d}.png")
    return folder
