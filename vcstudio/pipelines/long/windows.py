"""Window layout for temporal co-denoising of a long video (consistency-tuning paper, eqs. 18-19;
Gen-L-Video).

At every denoising step the long latent video v_t (L frames) is cut into N overlapping windows
of K frames, window i starting at S*i (eq. 18: P_i(v_t) = v_t[S*i : S*i+K]); each window is
denoised with its own prompt h^i, and frame j of v_{t-1} is the solution of eq. 19,

    v_{t-1} = argmin_v sum_i || W_i * (P_i(v) - v^i_{t-1}) ||^2
      =>  v_{t-1}[j] = sum_{i : j in window i} W_i[j] v^i_{t-1}[j] / sum_{i : j in window i} W_i[j],

a per-frame weighted average of the window predictions. The weights here are normalised per frame
once, so fusing is a plain weighted sum. Unlike eq. 18 taken literally (and a public
implementation that left tail frames at zero when (L-K) % S != 0), the last window is aligned to
the end of the video so that every frame is covered.

On a VAE that compresses time (Wan2.1: 4 frames per latent frame after the first) the layout's
units are latent frames: :func:`latent_grid` turns the frames, window and stride a user gives in
video frames into latent ones (and says what it rounded), :func:`latent_segments` puts the
timeline on them, :func:`grid_table` says the windows in video frames again.

Everything here is pure: numbers in, numbers out; the samplers (pipelines.long.video,
pipelines.flow.long) call it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ...config import FUSIONS, PROMPT_MODES  # LongConfig's declared choices
from ...errors import InputError
from ...scene.segments import Segment


# ----------------------------------------------------------------------------- layout

def window_count(length: int, window: int, stride: int) -> int:
    """How many windows :func:`window_starts` lays out, counted without listing them (a
    limit checks it before anything is built): full strides, plus one for an uncovered tail."""
    length, window, stride = int(length), int(window), int(stride)
    return 1 + -(-(length - window) // stride) if length >= window and stride >= 1 else 0


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start frames of the windows (eq. 18), the last one aligned to the end of the video.

    ``starts = 0, S, 2S, ...`` while a full window fits; if that leaves tail frames uncovered
    ((L - K) % S != 0) one more window starting at L - K is added. Needs L >= K and 1 <= S <= K
    (a stride larger than the window would leave gaps between windows).
    """
    length, window, stride = int(length), int(window), int(stride)
    if window < 1:
        raise InputError(f"Window length must be at least 1 frame (got {window}).")
    if length < window:
        raise InputError(f"The video ({length} frames) is shorter than one window ({window}); "
                         f"lower --window to at most {length} or raise --frames.")
    if not 1 <= stride <= window:
        raise InputError(f"Stride must be between 1 and the window length {window} (got {stride}); "
                         f"a larger stride would leave frames between windows uncovered.")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def position_weights(window: int, kind: str = "uniform", sigma: Optional[float] = None) -> np.ndarray:
    """Weight of each position inside a window (the W_i of eq. 19, shared by all windows).

    uniform: 1 everywhere. pyramid: rises linearly to the centre, min(j+1, K-j) (never 0, so a
    frame seen by one window only keeps a weight). gaussian: exp(-(j-c)^2 / 2 sigma^2) around the
    centre c = (K-1)/2, sigma = K/4 unless given.
    """
    if kind not in FUSIONS:
        raise InputError(f"Unknown fusion '{kind}'; choose one of {', '.join(FUSIONS)}.")
    j = np.arange(window, dtype=np.float64)
    if kind == "uniform":
        return np.ones(window)
    if kind == "pyramid":
        return np.minimum(j + 1, window - j)
    sigma = float(sigma) if sigma else window / 4.0
    if sigma <= 0:
        raise InputError(f"Gaussian fusion needs sigma > 0 (got {sigma}).")
    return np.exp(-0.5 * ((j - (window - 1) / 2.0) / sigma) ** 2)


@dataclass
class WindowLayout:
    """The N windows over an L-frame video and their per-frame-normalised fusion weights.

    ``weights[i, p]`` is the weight of position p of window i (frame ``starts[i] + p``); for every
    frame the weights of the windows containing it sum to 1.
    """

    length: int
    window: int
    stride: int
    fusion: str
    starts: list[int]
    weights: np.ndarray = field(repr=False)

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    def frames(self, i: int) -> range:
        return range(self.starts[i], self.starts[i] + self.window)

    def frame_weights(self) -> np.ndarray:
        """Dense (N, L) matrix: weight of window i at frame j (0 where the window is absent)."""
        dense = np.zeros((self.n_windows, self.length))
        for i, s in enumerate(self.starts):
            dense[i, s:s + self.window] = self.weights[i]
        return dense

    def coverage(self) -> np.ndarray:
        """How many windows contain each frame (L,)."""
        cov = np.zeros(self.length, dtype=np.int64)
        for s in self.starts:
            cov[s:s + self.window] += 1
        return cov

    def batches(self, batch_size: int) -> list[list[int]]:
        """Window indices grouped into batches of at most ``batch_size`` (to run windows batched)."""
        batch_size = max(1, int(batch_size))
        idx = list(range(self.n_windows))
        return [idx[a:a + batch_size] for a in range(0, len(idx), batch_size)]


def normalise_weights(starts: Sequence[int], window: int, length: int,
                      raw: np.ndarray) -> np.ndarray:
    """Divide raw (N, K) window weights by their per-frame sum so each frame's weights sum to 1."""
    raw = np.broadcast_to(np.asarray(raw, dtype=np.float64), (len(starts), window))
    total = np.zeros(length)
    for i, s in enumerate(starts):
        total[s:s + window] += raw[i]
    if np.any(total <= 0):
        raise InputError("Fusion weights are zero on some frame; every frame needs a positive weight.")
    return np.stack([raw[i] / total[s:s + window] for i, s in enumerate(starts)])


def make_layout(length: int, window: int, stride: int, fusion: str = "uniform",
                sigma: Optional[float] = None) -> WindowLayout:
    """Windows (eq. 18, tail included) + per-frame-normalised fusion weights (eq. 19)."""
    starts = window_starts(length, window, stride)
    raw = position_weights(window, fusion, sigma)
    return WindowLayout(int(length), int(window), int(stride), fusion, starts,
                        normalise_weights(starts, window, length, raw))


# ----------------------------------------------------------------------------- latent frames

@dataclass(frozen=True)
class LatentGrid:
    """A long video's frames, window and stride as a VAE that packs ``temporal`` frames into a
    latent frame sees them (Wan2.1: 4, causally: the first frame alone, then 4 per latent
    frame). The user counts in video frames; the windows are laid out in latent frames.

    ``frames``/``window``/``stride``: what was asked (video frames). ``made``: the frames
    generated (the next ``temporal * k + 1`` count, cut back to ``frames`` after decoding).
    ``latent_*``: the layout's units. ``window_frames``/``stride_frames``: what the latent
    window and stride are in video frames (a window ``temporal * (k - 1) + 1``, a stride
    ``temporal * s``). ``note``: one line when anything was rounded, else "".
    """

    temporal: int
    frames: int
    window: int
    stride: int
    made: int
    latent_frames: int
    latent_window: int
    latent_stride: int

    @property
    def window_frames(self) -> int:
        return self.temporal * (self.latent_window - 1) + 1

    @property
    def stride_frames(self) -> int:
        return self.temporal * self.latent_stride

    def latent_of(self, frame: int) -> int:
        """The latent frame that holds video frame ``frame`` (0 alone, then ``temporal`` each)."""
        return 0 if frame <= 0 else (int(frame) - 1) // self.temporal + 1

    def video_span(self, start: int, end: int) -> tuple[int, int]:
        """Video frames [a, b) of latent frames [start, end) (of the ``made`` frames)."""
        t = self.temporal
        return (0 if start <= 0 else t * (start - 1) + 1), t * (end - 1) + 1

    @property
    def note(self) -> str:
        if self.temporal == 1:
            return ""
        said = []
        if self.made != self.frames:
            said.append(f"{self.frames} frames are made as {self.made} and cut back to "
                        f"{self.frames}")
        if self.window_frames != self.window:
            said.append(f"window {self.window} -> {self.window_frames} frames")
        if self.stride_frames != self.stride:
            said.append(f"stride {self.stride} -> {self.stride_frames} frames")
        if not said:
            return ""
        t = self.temporal
        return (f"{'; '.join(said)} (windows are counted in latent frames, the VAE packs {t} "
                f"frames per latent after the first: {self.latent_frames} latent frames, windows "
                f"of {self.latent_window} every {self.latent_stride})")


def latent_grid(frames: int, window: int, stride: int, temporal: int = 1) -> LatentGrid:
    """The layout units of a long video on a VAE with ``temporal`` compression (1: frames are
    latent frames, nothing changes). The video is made at the next ``temporal * k + 1`` count
    (k >= 1), so it can be cut back to exactly ``frames``; the window is rounded UP to the
    ``temporal * k + 1`` grid (a window never sees less than asked, and a window as long as the
    video stays one window), clamped to the latent video; the stride to the nearest multiple of
    ``temporal`` (halves up, at least one latent frame), at most the window."""
    frames, window, stride, t = int(frames), int(window), int(stride), max(1, int(temporal))
    if frames < 1 or window < 1 or stride < 1:
        raise InputError(f"Frames, window and stride must be at least 1 (got {frames}, {window}, "
                         f"{stride}).")
    if t == 1:
        return LatentGrid(1, frames, window, stride, frames, frames, window, stride)
    made = t * max(1, -(-(frames - 1) // t)) + 1
    n_lat = (made - 1) // t + 1
    k_lat = min(n_lat, -(-(window - 1) // t) + 1)
    s_lat = min(k_lat, max(1, int(stride / t + 0.5)))
    return LatentGrid(t, frames, window, stride, made, n_lat, k_lat, s_lat)


def latent_segments(segments: Sequence[Segment], grid: LatentGrid) -> list[Segment]:
    """The timeline's segments (video frames) on the latent frames that hold them; the last
    segment reaches the last latent frame (the frames made beyond ``grid.frames`` are its)."""
    if grid.temporal == 1:
        return list(segments)
    out = [Segment(s.prompt, grid.latent_of(s.start), grid.latent_of(s.end - 1) + 1)
           for s in segments]
    last = max(range(len(out)), key=lambda i: out[i].end)
    out[last] = Segment(out[last].prompt, out[last].start, grid.latent_frames)
    return out


def grid_table(rows: list[dict], grid: LatentGrid) -> list[dict]:
    """:func:`layout_table` rows of a latent layout, in video frames (the latent ones kept as
    ``latent_frames``): what the user counts in."""
    if grid.temporal == 1:
        return rows
    out = []
    for r in rows:
        a, b = grid.video_span(r["start"], r["end"])
        b = min(b, grid.frames)
        out.append({**r, "latent_frames": r["frames"], "start": a, "end": b,
                    "frames": f"{a}-{b - 1}"})
    return out


# ----------------------------------------------------------------------------- fusion (eq. 19)

class WindowAccumulator:
    """Running weighted sum of window predictions into one (..., L, ...) tensor.

    Holds a single output-sized buffer, so memory stays at one latent video however many windows
    are added; windows may arrive one at a time or in batches.
    """

    def __init__(self, layout: WindowLayout, like: torch.Tensor, frame_dim: int = 2,
                 weights: Optional[np.ndarray] = None) -> None:
        self.layout = layout
        self.frame_dim = frame_dim % like.dim()
        shape = list(like.shape)
        shape[self.frame_dim] = layout.length
        self.out = torch.zeros(shape, dtype=torch.float32, device=like.device)
        w = layout.weights if weights is None else normalise_weights(
            layout.starts, layout.window, layout.length, weights)
        self._w = torch.as_tensor(w, dtype=torch.float32, device=like.device)
        self._seen = np.zeros(layout.n_windows, dtype=bool)

    def add(self, i: int, pred: torch.Tensor) -> None:
        """Add window ``i``'s prediction (same shape as the video but K frames on frame_dim)."""
        if pred.shape[self.frame_dim] != self.layout.window:
            raise ValueError(f"window prediction has {pred.shape[self.frame_dim]} frames on dim "
                             f"{self.frame_dim}, expected {self.layout.window}")
        view = [1] * pred.dim()
        view[self.frame_dim] = self.layout.window
        s = self.layout.starts[i]
        self.out.narrow(self.frame_dim, s, self.layout.window).add_(
            pred.float() * self._w[i].view(view))
        self._seen[i] = True

    def result(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if not self._seen.all():
            missing = np.flatnonzero(~self._seen).tolist()
            raise ValueError(f"windows {missing} were never added; their frames would be incomplete")
        return self.out if dtype is None else self.out.to(dtype)


def fuse(window_predictions: Union[torch.Tensor, Sequence[torch.Tensor]], layout: WindowLayout,
         weights: Optional[np.ndarray] = None, frame_dim: int = 2) -> torch.Tensor:
    """Eq. 19: every frame = weighted average of the window predictions that contain it.

    ``window_predictions``: a sequence of N tensors, or one tensor with the window index first,
    each window shaped like the video with K frames on ``frame_dim`` (default (B, C, K, H, W)).
    ``weights``: optional raw (K,) or (N, K) weights replacing the layout's (normalised here).
    Returns the (B, C, L, H, W) video in the predictions' dtype.
    """
    preds = list(window_predictions) if not isinstance(window_predictions, torch.Tensor) \
        else list(window_predictions.unbind(0))
    if len(preds) != layout.n_windows:
        raise ValueError(f"got {len(preds)} window predictions for {layout.n_windows} windows")
    acc = WindowAccumulator(layout, preds[0], frame_dim, weights)
    for i, p in enumerate(preds):
        acc.add(i, p)
    return acc.result(preds[0].dtype)


def window_slice(video: torch.Tensor, layout: WindowLayout, indices: Sequence[int],
                 frame_dim: int = 2) -> torch.Tensor:
    """Stack windows ``indices`` of ``video`` along a new first dim (eq. 18's P_i), for batching."""
    return torch.stack([video.narrow(frame_dim, layout.starts[i], layout.window) for i in indices])


# ----------------------------------------------------------------------------- prompt timeline

def _overlaps(layout: WindowLayout, segments: Sequence[Segment]) -> np.ndarray:
    ov = np.zeros((layout.n_windows, len(segments)))
    for i, s in enumerate(layout.starts):
        e = s + layout.window
        for j, seg in enumerate(segments):
            ov[i, j] = max(0, min(e, seg.end) - max(s, seg.start))
    return ov


def window_prompts(layout: WindowLayout, segments: Sequence[Segment],
                   mode: str = "majority") -> list[list[tuple[int, float]]]:
    """Which segment prompt(s) condition each window, as ``[(segment index, weight), ...]``.

    majority: the one segment overlapping the window on most frames (ties -> the earlier one).
    interpolate: every overlapping segment, weighted by its share of the window's frames, so a
    window straddling a seam gets a blend of the two prompt embeddings (see :func:`mix_embeddings`).
    """
    if mode not in PROMPT_MODES:
        raise InputError(f"Unknown prompt mode '{mode}'; choose one of {', '.join(PROMPT_MODES)}.")
    if not segments:
        raise InputError("No segments given for the prompt timeline.")
    ov = _overlaps(layout, segments)
    out = []
    for i in range(layout.n_windows):
        row = ov[i]
        if row.sum() == 0:  # no segment touches this window: take the nearest one
            mid = layout.starts[i] + layout.window / 2
            j = int(np.argmin([abs((s.start + s.end) / 2 - mid) for s in segments]))
            out.append([(j, 1.0)])
        elif mode == "majority":
            out.append([(int(np.argmax(row)), 1.0)])  # argmax takes the first of ties
        else:
            out.append([(int(j), float(row[j] / row.sum())) for j in np.flatnonzero(row)])
    return out


def mix_embeddings(segment_embeddings: torch.Tensor,
                   assignment: Sequence[Sequence[tuple[int, float]]]) -> torch.Tensor:
    """Per-window prompt embeddings: weighted sums of the segments' embeddings.

    ``segment_embeddings``: (n_segments, ...) e.g. (n, 77, 768) text-encoder states.
    Returns (n_windows, ...). With majority assignment this is a plain gather.
    """
    rows = []
    for pairs in assignment:
        e = sum(w * segment_embeddings[j] for j, w in pairs)
        rows.append(e)
    return torch.stack(rows).to(segment_embeddings.dtype)


def layout_table(layout: WindowLayout, segments: Optional[Sequence[Segment]] = None,
                 mode: str = "majority") -> list[dict]:
    """One row per window: index, frame range (end exclusive), prompt(s) with weights, and the
    window's fusion weights at its first / centre / last position. For printing and the UI."""
    assign = window_prompts(layout, segments, mode) if segments else None
    rows = []
    for i, s in enumerate(layout.starts):
        w = layout.weights[i]
        row = {"window": i, "start": s, "end": s + layout.window,
               "frames": f"{s}-{s + layout.window - 1}",
               "weight_first": round(float(w[0]), 4),
               "weight_centre": round(float(w[layout.window // 2]), 4),
               "weight_last": round(float(w[-1]), 4)}
        if assign is not None:
            pairs = assign[i]
            row["segments"] = [j for j, _ in pairs]
            row["prompt"] = " | ".join(
                segments[j].prompt if len(pairs) == 1 else f"{wt:.2f}*{segments[j].prompt}"
                for j, wt in pairs)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text rendering of :func:`layout_table` for the CLI."""
    lines = [f"{'win':>3}  {'frames':>9}  {'w_first':>7} {'w_mid':>6} {'w_last':>6}  prompt"]
    for r in rows:
        lines.append(f"{r['window']:>3}  {r['frames']:>9}  {r['weight_first']:>7.3f} "
                     f"{r['weight_centre']:>6.3f} {r['weight_last']:>6.3f}  {r.get('prompt', '')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- picture

_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
                     [0, 128, 128], [170, 110, 40]], dtype=np.float64)


def layout_image(layout: WindowLayout, segments: Optional[Sequence[Segment]] = None,
                 mode: str = "majority", max_width: int = 960, row_height: int = 10) -> np.ndarray:
    """uint8 (H, W, 3) picture of the layout for the UI (numpy only).

    One row per window: cells on its frames, coloured by its prompt's segment (blended when
    interpolating), brightness = the window's normalised fusion weight at that frame. Below,
    a strip with the segments of the timeline, and a row that is white where the per-frame
    weights sum to 1 (red otherwise, which would be a bug).
    """
    L = layout.length
    cw = max(1, min(16, max_width // L))
    gap = 2
    seg_colour = np.tile([[200.0, 200.0, 200.0]], (layout.n_windows, 1))
    if segments:
        for i, pairs in enumerate(window_prompts(layout, segments, mode)):
            seg_colour[i] = sum(w * _PALETTE[j % len(_PALETTE)] for j, w in pairs)
    dense = layout.frame_weights()
    n_rows = layout.n_windows + 2
    img = np.full((n_rows * (row_height + gap) + gap, L * cw, 3), 24.0)
    for i in range(layout.n_windows):
        y = gap + i * (row_height + gap)
        for j in range(L):
            if dense[i, j] > 0:
                shade = 0.25 + 0.75 * dense[i, j]
                img[y:y + row_height, j * cw:(j + 1) * cw] = seg_colour[i] * shade
    y = gap + layout.n_windows * (row_height + gap)
    if segments:
        for k, seg in enumerate(segments):
            img[y:y + row_height, seg.start * cw:seg.end * cw] = _PALETTE[k % len(_PALETTE)]
    y += row_height + gap
    ok = np.isclose(dense.sum(0), 1.0)
    for j in range(L):
        img[y:y + row_height, j * cw:(j + 1) * cw] = [255, 255, 255] if ok[j] else [255, 0, 0]
    return np.clip(img, 0, 255).astype(np.uint8)
