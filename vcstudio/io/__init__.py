"""Video/image I/O at the uint8 (F, H, W, 3) edge."""
from .video import (clip_hash, load_clip, read_image, read_video, resize_frames, write_frames,
                    write_gif, write_mp4)

__all__ = ["clip_hash", "load_clip", "read_image", "read_video", "resize_frames", "write_frames",
           "write_gif", "write_mp4"]
