"""Video read / validate / sample / write (mp4, webm, mov, avi, mkv, gif; folders and zips of
frames through :mod:`.images`).

Frames at this edge are uint8 numpy arrays (F, H, W, 3), RGB. Every failure a user can cause
raises :class:`~vcstudio.errors.InputError` with a one-line message that says what to do: a
file that is empty, is not a video (a text file renamed .mp4), is cut short (an interrupted
download: its index is missing, or its frames stop before the container says they end) or is
damaged part-way.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Limits
from ..errors import InputError
from .atomic import atomic_path
from .frames import as_rgb, check_source_size, frame_indices, shown
from .images import IMAGE_EXTS, read_image_folder, read_image_zip

VIDEO_EXTS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".gif"}
CLIP_EXTS = VIDEO_EXTS | {".zip"}  # what read_video takes as a file (besides a folder)
_FIX = "upload the complete file again, or re-encode it as H.264 mp4"


def read_video(path: str | Path, start: int = 0, stride: int = 1, count: Optional[int] = None,
               limits: Limits = Limits()) -> np.ndarray:
    """Read frames ``start, start+stride, ...`` (``count`` of them, or all) -> uint8 (F,H,W,3).

    Accepts mp4/webm/mov/avi/mkv/m4v/gif files (imageio's ffmpeg / pillow plugins), folders of
    images and zips of images (frames sorted by name, all of one size: :mod:`.images`).
    """
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, start, stride, count, limits)
    _check_file(path, limits)
    if path.suffix.lower() == ".zip":
        return read_image_zip(path, start, stride, count, limits)
    return np.stack(list(_decode(path, start, stride, count, limits)))


def iter_video(path: str | Path, chunk: int = 8, limits: Limits = Limits()):
    """All frames of a clip as uint8 (<= chunk, H, W, 3) arrays, decoded as they are consumed
    (bounded memory for scoring a clip of any length; same checks and messages as
    :func:`read_video`). Folders and zips of images are read whole, then chunked."""
    path = Path(path)
    if chunk < 1:
        raise InputError(f"The chunk must be at least 1 frame, got {chunk}.")
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        frames = read_video(path, limits=limits)
        for i in range(0, len(frames), chunk):
            yield frames[i:i + chunk]
        return
    _check_file(path, limits)
    buf = []
    for frame in _decode(path, 0, 1, None, limits):
        buf.append(frame)
        if len(buf) == chunk:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def frame_count(path: str | Path) -> Optional[int]:
    """How many frames a clip holds, without decoding them (the container's frame count or
    duration x fps; a GIF's frame count; the images of a folder or zip), for estimates: None
    where it cannot be told cheaply. Never raises."""
    path = Path(path)
    try:
        if path.is_dir():
            return sum(1 for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTS) or None
        if path.suffix.lower() == ".zip":
            import zipfile

            with zipfile.ZipFile(path) as z:
                return sum(1 for n in z.namelist()
                           if Path(n).suffix.lower() in IMAGE_EXTS) or None
        if path.suffix.lower() == ".gif":
            from PIL import Image

            with Image.open(path) as im:
                return int(getattr(im, "n_frames", 1))
        import imageio.v2 as iio2

        reader = iio2.get_reader(str(path), format="FFMPEG")
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()
        n = meta.get("nframes")
        if isinstance(n, (int, float)) and 0 < n < 10**7:
            return int(n)
        return max(1, round(float(meta["duration"]) * float(meta["fps"])))
    except Exception:  # noqa: BLE001 - an estimate's input: unknown, not an error
        return None


def _check_file(path: Path, limits: Limits) -> None:
    name = shown(path.name)
    if not path.is_file():
        raise InputError(f"Video not found: {shown(str(path), 200)}")
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        raise InputError(f"{name} is a single image; give a video file, a zip of frames or a "
                         "folder of frames.")
    if ext not in CLIP_EXTS:
        raise InputError(f"{name} is not a supported video type; use one of "
                         f"{', '.join(sorted(CLIP_EXTS))}.")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes); upload the file again.")
    if size > limits.max_upload_mb * 2**20:
        raise InputError(f"{name} is larger than {limits.max_upload_mb:g} MB; trim or compress "
                         "it first.")


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return shown(lines[-1] if lines else type(e).__name__, 160)


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(256)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


_NOT_VIDEO_FIX = "give a video file (mp4, webm, mov, avi, gif) or a zip of frames"


def _open_problem(path: Path, e: BaseException) -> tuple[str, str]:
    """(why ffmpeg could not open ``path``, what to do), from its log, which imageio passes on."""
    log = str(e)
    if _looks_like_text(path):
        return "it holds text, not video (a renamed file?)", _NOT_VIDEO_FIX
    if "misdetection possible" in log or ("Invalid data found" in log and "moov" not in log):
        return f"ffmpeg does not recognise it as a video ({_last_line(e)})", _NOT_VIDEO_FIX
    if any(s in log for s in ("moov atom not found", "End of file", "partial file",
                              "reached eof", "runcated")):
        return "it is cut short (its end is missing: an interrupted download or copy?)", _FIX
    return f"it may be corrupt or use a codec we cannot decode ({_last_line(e)})", _FIX


def _demux_problem(path: Path) -> Optional[str]:
    """The first error ffmpeg reports while reading the video stream without decoding it
    (cheap: no frames are decoded); None when it reads cleanly."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
           "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # drop ffmpeg's "[in#0/mov @ 0x...]" prefixes; "partial file" says most, if it is there
    lines = [ln.split("] ", 1)[-1].strip() for ln in r.stderr.decode("utf-8", "replace")
             .splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    return shown(next((ln for ln in lines if "partial file" in ln), lines[0]), 120)


def _decode(path: Path, start: int, stride: int, count: Optional[int],
            limits: Limits):
    """Yields the selected frames as they decode (then checks the file was complete)."""
    import imageio.v2 as iio2

    name = shown(path.name)
    gif = path.suffix.lower() == ".gif"
    try:
        reader = iio2.get_reader(str(path), format="GIF-PIL" if gif else "FFMPEG")
    except Exception as e:
        why, fix = _open_problem(path, e)
        raise InputError(f"Could not open {name} as a video: {why}; {fix}.") from None
    taken = 0
    total, stopped_early = 0, False
    try:
        meta = {} if gif else reader.get_meta_data()
        for i, frame in enumerate(reader):
            total = i + 1
            if total > limits.max_source_frames:
                raise InputError(f"{name} has more than {limits.max_source_frames} frames; "
                                 "trim it first.")
            if i == 0:
                frame0 = as_rgb(frame)
                check_source_size(frame0.shape[0], frame0.shape[1], limits, name)
            if i >= start and (i - start) % stride == 0:
                taken += 1
                yield as_rgb(frame)
                if count is not None and taken == count:
                    stopped_early = True
                    break
    except InputError:
        raise
    except Exception as e:  # the decoder failed part-way: the file is damaged there
        raise InputError(f"{name} is damaged after frame {total} ({_last_line(e)}); "
                         f"{_FIX}.") from None
    finally:
        reader.close()
    if total == 0:
        problem = _demux_problem(path) if not gif else None
        raise InputError(f"{name} holds no frames that decode"
                         + (f" (ffmpeg: {problem})" if problem else "") + f"; {_FIX}.")
    if not stopped_early:
        _check_complete(path, total, meta)
    if count is not None and taken < count:
        frame_indices(total, start, stride, count)  # raises with the numbers


def _check_complete(path: Path, decoded: int, meta: dict) -> None:
    """A file cut short whose index survived (mp4 with its index first, mkv, webm) decodes
    without an error and just stops: compare with the length its container declares and, when
    frames are missing, ask ffmpeg whether the stream really ends early."""
    duration, fps = meta.get("duration"), meta.get("fps")
    try:
        expected = round(float(duration) * float(fps))
    except (TypeError, ValueError, OverflowError):
        return
    if not 0 < expected < 10**7 or decoded >= expected - 1:
        return
    problem = _demux_problem(path)
    if problem:  # a shortfall alone may be an audio track longer than the video
        raise InputError(f"{shown(path.name)} is cut short: only {decoded} of its {expected} "
                         f"frames decode (ffmpeg: {problem}); {_FIX}.")


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
