"""Reconstruction metrics against the source frames: PSNR, SSIM (Gaussian window), LPIPS.

- PSNR = 10 log10(255^2 / MSE) per frame on uint8 RGB; the video score is the mean over frames.
- SSIM of Wang et al. 2004: 11x11 Gaussian window with sigma 1.5 (scipy's truncation at 3.5
  sigma), K1 = 0.01, K2 = 0.03, L = 255, population covariances, 'valid' window positions only,
  per channel then averaged. (skimage's default 7x7 uniform window gives different numbers; with
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False it agrees with this.)
- LPIPS (Zhang et al. 2018), AlexNet v0.1: inputs in [-1, 1], ImageNet scaling layer, relu1..relu5
  features unit-normalised over channels, squared differences weighted by the learned 1x1
  "lin" layers, spatially averaged and summed. Needs the torchvision AlexNet weights and the
  LPIPS lin weights (``alex.pth`` of the LPIPS release); skipped with the reason otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ModelNotFoundError
from .result import MetricResult

PSNR_DEF = "PSNR = 10 log10(255^2 / MSE) per frame, uint8 RGB; mean over frames"
SSIM_DEF = ("SSIM (Wang et al. 2004): Gaussian window sigma 1.5 (11x11), K1=0.01, K2=0.03, "
            "per channel, valid positions; mean over frames")
LPIPS_DEF = "LPIPS v0.1 AlexNet (Zhang et al. 2018), inputs in [-1,1]; mean over frames"


def match_source(frames: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The first len(frames) source frames, resized to the frames' size when it differs."""
    import cv2

    if len(source) < len(frames):
        raise InputError(f"The source has {len(source)} frames but the video has {len(frames)}; "
                         "give a source at least as long as the video.")
    source = source[:len(frames)]
    h, w = frames.shape[1:3]
    if source.shape[1:3] != (h, w):
        source = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_AREA) for s in source])
    return source


def psnr_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (inf for identical frames)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = (d ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0 ** 2 / mse)


def psnr(frames: np.ndarray, source: np.ndarray) -> MetricResult:
    src = match_source(frames, source)
    vals = psnr_frames(frames, src)
    return MetricResult("psnr", float(np.mean(vals)), list(vals), "pixels", PSNR_DEF, True)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim_frames(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, device=None) -> np.ndarray:
    """Per-frame SSIM of uint8 (F, H, W, 3) stacks: OpenCV float64 on the CPU, torch on a GPU."""
    device = torch.device(device or "cpu")
    g = gaussian_window(sigma)
    if device.type == "cpu":
        return np.array([_ssim_cv2(x, y, g.numpy()) for x, y in zip(a, b)])
    return _ssim_torch(a, b, g, device)


def _ssim_map(mx, my, sxx, syy, sxy, c1, c2):
    """Eq. (13) of Wang et al. 2004 from local means, variances and covariance."""
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s


def _ssim_cv2(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    import cv2

    r = len(g) // 2
    x = x.astype(np.float64)
    y = y.astype(np.float64)

    def blur(t):  # separable Gaussian, then keep the 'valid' positions only
        return cv2.sepFilter2D(t, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    mx, my = blur(x), blur(y)
    s = _ssim_map(mx, my, blur(x * x) - mx * mx, blur(y * y) - my * my,
                       blur(x * y) - mx * my, (0.01 * 255) ** 2, (0.03 * 255) ** 2)
    return float(s.mean())


def _ssim_torch(a, b, g: torch.Tensor, device) -> np.ndarray:
    # [0, 1] scale keeps float32 variances (E[x^2] - E[x]^2) accurate
    from ..models.encode import frames_to_unit

    x, y = frames_to_unit(a, device), frames_to_unit(b, device)
    c = x.shape[1]
    g = g.to(device, torch.float32)
    k = g.numel()
    gx = g.view(1, 1, 1, k).repeat(c, 1, 1, 1)
    gy = g.view(1, 1, k, 1).repeat(c, 1, 1, 1)

    def blur(t):  # separable, 'valid' positions only
        return F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)

    mx, my = blur(x), blur(y)
    s = _ssim_map(mx, my, blur(x * x) - mx * mx, blur(y * y) - my * my,
                       blur(x * y) - mx * my, 0.01 ** 2, 0.03 ** 2)
    return s.mean(dim=(1, 2, 3)).double().cpu().numpy()


def ssim(frames: np.ndarray, source: np.ndarray, device=None) -> MetricResult:
    src = match_source(frames, source)
    vals = ssim_frames(frames, src, device=device)
    return MetricResult("ssim", float(np.mean(vals)), list(vals), "pixels", SSIM_DEF, True)


# --- LPIPS -------------------------------------------------------------------------------------

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_ALEX_TAPS = (1, 4, 7, 9, 11)  # indices of relu1..relu5 in torchvision's alexnet.features
_ALEX_CH = (64, 192, 384, 256, 256)


class LPIPSAlex(torch.nn.Module):
    """LPIPS v0.1 with an AlexNet trunk; ``lin`` holds the five 1x1 weightings."""

    def __init__(self, features: torch.nn.Sequential) -> None:
        super().__init__()
        self.features = features[:_ALEX_TAPS[-1] + 1]
        self.lin = torch.nn.ModuleList(torch.nn.Conv2d(c, 1, 1, bias=False) for c in _ALEX_CH)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def _taps(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _ALEX_TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a``, ``b`` in [-1, 1], (N, 3, H, W) -> (N,) distances."""
        fa, fb = self._taps(a), self._taps(b)
        return sum(lin((x - y) ** 2).mean(dim=(2, 3))[:, 0]
                   for lin, x, y in zip(self.lin, fa, fb))


def _load_tensors(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def build_lpips(lin_weights: Optional[str | Path] = None,
                alexnet_weights: Optional[str | Path] = None) -> LPIPSAlex:
    """LPIPS from local files; raises ModelNotFoundError naming what is missing.

    ``alexnet_weights``: torchvision's ``alexnet-owt-7be5be79.pth`` (default: torch hub's
    checkpoint folder). ``lin_weights``: the LPIPS v0.1 ``alex.pth`` (keys ``linK.model.1.weight``)
    or a safetensors file with the same keys.
    """
    import torchvision

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    alex = Path(alexnet_weights) if alexnet_weights else hub / "alexnet-owt-7be5be79.pth"
    if not alex.is_file():
        raise ModelNotFoundError(f"LPIPS needs torchvision's AlexNet weights at {alex}; download "
                                 "them once (torchvision.models.alexnet(weights='DEFAULT')) or "
                                 "pass --lpips-alexnet PATH.")
    if not lin_weights or not Path(lin_weights).is_file():
        raise ModelNotFoundError("LPIPS needs the v0.1 AlexNet 'lin' weights (alex.pth from the "
                                 "LPIPS release); pass --lpips-weights PATH.")
    net = torchvision.models.alexnet(weights=None)
    net.load_state_dict(_load_tensors(alex))
    model = LPIPSAlex(net.features)
    lin = _load_tensors(Path(lin_weights))
    for k, conv in enumerate(model.lin):
        w = lin.get(f"lin{k}.model.1.weight", lin.get(f"lin{k}.weight"))
        if w is None:
            raise ModelNotFoundError(f"{lin_weights} has no lin{k} weights; it is not an LPIPS "
                                     "v0.1 AlexNet file.")
        conv.weight.data.copy_(w.reshape(conv.weight.shape))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_frames(model: LPIPSAlex, a: np.ndarray, b: np.ndarray, device=None,
                 batch: int = 8) -> np.ndarray:
    device = torch.device(device or "cpu")
    model = model.to(device)
    out = []
    for i in range(0, len(a), batch):
        x = torch.from_numpy(a[i:i + batch]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = torch.from_numpy(b[i:i + batch]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(model(x, y).double().cpu())
    return torch.cat(out).numpy()


def lpips(frames: np.ndarray, source: np.ndarray, model: Optional[LPIPSAlex] = None,
          device=None) -> MetricResult:
    if model is None:
        try:
            model = build_lpips()
        except ModelNotFoundError as e:
            return MetricResult.skip("lpips", str(e), LPIPS_DEF)
    src = match_source(frames, source)
    vals = lpips_frames(model, frames, src, device)
    return MetricResult("lpips", float(np.mean(vals)), list(vals), "LPIPS v0.1 AlexNet",
                        LPIPS_DEF, False)

