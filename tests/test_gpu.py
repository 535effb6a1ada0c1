"""CUDA checks (run on the lent GPU: pytest -m gpu): bf16 autocast + torch.compile paths."""
import pytest
import torch

from vcstudio.run_context import RunContext

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_inflated_one_frame_matches_2d_in_bf16(tiny_sd, cache):
    from vcstudio.device import precision_for
    from vcstudio.models.inflate import VideoDenoiser
    from vcstudio.models.loading import load_base

    dev = torch.device("cuda")
    prec = precision_for(dev)
    base = load_base(str(tiny_sd), dev, torch.bfloat16, cache)
    vd = VideoDenoiser(base.unet).eval()
    x, e = torch.randn(2, 4, 1, 8, 8, device=dev), torch.randn(2, 77, 32, device=dev)
    with torch.no_grad(), prec.autocast():
        a = vd(x, 500, e)[:, :, 0].float()
        b = base.unet(x[:, :, 0], 500, e).sample.float()
    assert (a - b).abs().max() < 2e-2


def test_compiled_tuning_runs_and_lowers_loss(tiny_sd, clip8, tmp_path, cache):
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=40, lr=1e-3, checkpoint_every=0, compile="yes")
    res = tune(cfg, tmp_path / "run", frames=clip8,
               run=RunContext(cache=cache, device=torch.device("cuda")),
               invert=False, save_source=False)
    assert len(res.losses) == 40 and all(r["loss"] == r["loss"] for r in res.losses)
