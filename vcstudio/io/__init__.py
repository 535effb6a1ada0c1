"""Video/image I/O at the uint8 (F, H, W, 3) edge."""
from .clip import fit_frames, load_clip, preview_clip
from .images import read_image
from .resize import POSITIONS, RESIZE_MODES, check_size, default_size, resize_frames
from .uploads import store_upload
from .video import (CLIP_EXTS, clip_hash, iter_video, read_video, write_frames, write_gif,
                    write_mp4)

__all__ = ["CLIP_EXTS", "POSITIONS", "RESIZE_MODES", "check_size", "clip_hash", "default_size",
           "fit_frames", "iter_video", "load_clip", "preview_clip", "read_image", "read_video",
           "resize_frames", "store_upload", "write_frames", "write_gif", "write_mp4"]
