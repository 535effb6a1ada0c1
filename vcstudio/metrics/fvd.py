"""FVD (Unterthiner et al. 2018): Fréchet distance between I3D features of two sets of videos.

Optional: runs only with I3D weights the user provides as a TorchScript file whose forward takes
float (N, 3, T, 224, 224) in [-1, 1] and returns (N, 400) logits or (N, D) features (e.g. the
widely used port of the TF-Hub I3D). Nothing is downloaded.

Pitfalls (why FVD numbers from different codebases disagree; never compare across ports):
- the resize method to 224x224 (bilinear vs area vs TF's resize) changes the score;
- clips shorter than 10 frames are out of I3D's training range; the original uses 16 frames;
- FVD is a set statistic: with few videos the covariance is rank-deficient and the score is
  dominated by sample count (the reference uses 2048 videos; 256 is the usual minimum);
- weight ports (TF-Hub -> PyTorch) and the layer used (logits vs pool) differ between repos.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelNotFoundError
from .result import MetricResult

DEFINITION = "FVD: Fréchet distance of I3D features (user-provided I3D TorchScript)"


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2}), via the eigenvalues of C1 C2."""
    import scipy.linalg

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2.0 * covmean))


def fvd_from_features(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def load_i3d(path: str | Path):
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"No I3D TorchScript file at {path}; FVD needs one you provide.")
    return torch.jit.load(str(path), map_location="cpu").eval()


def fvd(videos_a, videos_b, i3d_path: str | Path | None = None) -> MetricResult:
    """FVD between two lists of uint8 (T, H, W, 3) videos (T >= 10, same T)."""
    if i3d_path is None:
        return MetricResult.skip("fvd", "FVD needs user-provided I3D weights (--i3d PATH)",
                                 DEFINITION)
    import torch
    import torch.nn.functional as F

    model = load_i3d(i3d_path)

    def feats(videos):
        out = []
        for v in videos:
            if len(v) < 10:
                raise ModelNotFoundError("FVD needs clips of at least 10 frames.")
            x = torch.from_numpy(np.asarray(v)).permute(0, 3, 1, 2).float() / 127.5 - 1
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
            with torch.no_grad():
                out.append(model(x.permute(1, 0, 2, 3)[None]).reshape(-1).numpy())
        return np.stack(out)

    return MetricResult("fvd", fvd_from_features(feats(videos_a), feats(videos_b)), [],
                        f"I3D ({Path(i3d_path).name})", DEFINITION, False)
