"""Jobs estimate their peak memory before starting and refuse what does not fit, naming the
setting to lower; an out-of-memory inside a job fails that job and the studio keeps serving."""
import sys
from dataclasses import dataclass

import pytest

from vcstudio import memory
from vcstudio.config import DataConfig, LongConfig, TuneConfig
from vcstudio.errors import OutOfMemoryError
from vcstudio.run_context import RunContext
from vcstudio.session import JobSpec, Studio

pytestmark = pytest.mark.usefixtures("one_thread")


def test_check_refuses_what_exceeds_the_available_memory_and_names_the_setting():
    need = memory.Need(memory.frames_gib(150, 718, 718, 2), 0.0, "a video of 150 frames",
                       "--frames")
    assert need.host_gib == pytest.approx(150 * 718 * 718 * 3 * 2 / 2**30)  # 0.43 GiB
    memory.check(need, "cpu", host_gib=4.0)  # fits: 0.43 + 0.5 reserve < 0.9 x 4
    with pytest.raises(OutOfMemoryError, match=r"~0\.4 GiB .* lower --frames"):
        memory.check(need, "cpu", host_gib=0.8)
    # on CUDA the device part is checked against the device, the host part against the host
    gpu = memory.Need(0.1, 30.0, "tuning 24 frames at 512x512", "--frames")
    memory.check(gpu, "cuda:0", host_gib=4.0, device_gib=40.0)
    with pytest.raises(OutOfMemoryError, match=r"30\.0 GiB of device memory and ~24\.0 GiB"):
        memory.check(gpu, "cuda:0", host_gib=4.0, device_gib=24.0)
    # SD 1.x sizes: 24 frames at 512^2 with checkpointing ~25 GiB; sampling them ~16 GiB
    assert memory.tune_gib(24, 512, 512, 0.0, True) == pytest.approx(3.3 + 24 * 0.9)
    assert memory.sample_gib(24, 512, 512) == pytest.approx(2.1 + 2 * 24 * 0.3)


def test_host_memory_reads_meminfo_and_a_container_limit(tmp_path, monkeypatch):
    (tmp_path / "meminfo").write_text("MemTotal: 16000000 kB\nMemFree: 1000 kB\n"
                                      "MemAvailable: 8388608 kB\n")
    cg = tmp_path / "cg"
    cg.mkdir()
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(memory, "CGROUP", str(cg))
    assert memory.host_available_gib() == pytest.approx(8.0)
    (cg / "memory.max").write_text(str(6 * 2**30))
    (cg / "memory.current").write_text(str(2 * 2**30))
    assert memory.host_available_gib() == pytest.approx(4.0)  # the Space's own limit


def test_a_tune_and_a_long_video_that_do_not_fit_are_refused_before_they_start(
        tiny_sd, clip8, tmp_path, cache, monkeypatch):
    from vcstudio.pipelines.long.video import long_video
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=2, lr=1e-3, checkpoint_every=0, inversion_steps=2)
    res = tune(cfg, tmp_path / "run", frames=clip8, run=RunContext(cache=cache))
    # a machine with 1 GiB available (a kernel's meminfo, written here)
    (tmp_path / "meminfo").write_text("MemAvailable: 1048576 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(memory, "CGROUP", str(tmp_path / "no-cgroup"))
    # 2000 frames at 256^2 = 0.37 GiB decoded, x2 with the writer; + reserve > 0.9 GiB
    long = LongConfig(prompts=["a red circle"], frames=2000, window=8, stride=4, steps=2,
                      size=256)
    with pytest.raises(OutOfMemoryError, match=r"(?i)a long video of 2000 frames .* lower long\.frames \(--frames\)"):
        long_video(res.run_dir, long, run=RunContext(cache=cache))
    assert not (res.run_dir / "long").exists()  # nothing written
    big = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=4096, height=4096), steps=2)
    import numpy as np

    with pytest.raises(OutOfMemoryError, match=r"(?i)tuning 8 frames at 4096x4096 .* lower data\.n_frames \(--frames\)"):
        tune(big, tmp_path / "big", frames=np.zeros((8, 4096, 4096, 3), np.uint8),
             run=RunContext(cache=cache))
    assert not (tmp_path / "big" / "delta.safetensors").exists()


@dataclass
class _Cfg:
    kind: str = "memory"


def _boom(cfg, ctx):  # a job whose allocation fails (host or device)
    import torch

    if cfg.kind == "memory":
        raise MemoryError()
    if cfg.kind == "torch":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return "served"


@pytest.mark.parametrize("kind, message", [("memory", "ran out of host memory"),
                                           ("torch", "ran out of memory")])
def test_an_out_of_memory_inside_a_job_fails_it_with_a_message_and_the_studio_serves_on(
        tmp_path, kind, message):
    with Studio(tmp_path / "data", jobs={"eval": JobSpec("eval", _Cfg, _boom)}) as studio:
        job = studio.submit("eval", _Cfg(kind))
        out = studio.wait(job, timeout=30)
        assert out.status == "failed" and isinstance(out.error, OutOfMemoryError)
        assert message in str(out.error) and "keeps running" in str(out.error)
        assert studio.store.job(job).status == "failed"
        assert studio.run("eval", _Cfg("ok")) == "served"  # the next job runs


def test_scoring_a_long_clip_with_flow_metrics_that_does_not_fit_is_refused(tmp_path,
                                                                             monkeypatch):
    import numpy as np

    from vcstudio.jobs.scoring import check_scoring_memory

    frames = np.zeros((150, 718, 718, 3), np.uint8)  # the 6-second 718x718 clip
    # 150 frames = 0.22 GiB; + 149 flow pairs x 718^2 x 16 bytes = 1.14 GiB
    (tmp_path / "meminfo").write_text("MemAvailable: 2097152 kB\n")  # 2 GiB available
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(memory, "CGROUP", str(tmp_path / "no-cgroup"))
    check_scoring_memory(frames, ["clip_text", "consistency_adjacent"], None, "cpu")
    with pytest.raises(OutOfMemoryError, match=r"~1\.4 GiB .* leave out the flow metrics "
                                               r"\(warp_error\)"):
        check_scoring_memory(frames, ["clip_text", "warp_error"], None, "cpu")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_host_memory_goes_back_to_the_os():
    """What a job freed but the allocator kept (every 20th block still alive, as a job's
    leftovers pin a heap) leaves RSS once released."""
    from vcstudio.memory import release_freed_host_memory

    blocks = [b"\x01" * 100_000 for _ in range(2000)]  # 200 MB in heap-sized blocks, written
    keep = blocks[::20]
    del blocks
    held = _rss_mib()
    assert release_freed_host_memory()
    assert held - _rss_mib() > 100, "freed pages stayed with the process"
    assert len(keep) == 100


def test_image_to_video_jobs_that_do_not_fit_are_refused_before_a_run_is_recorded(
        tmp_path, monkeypatch):
    """The I2V A/B and the VCD reward tune check their peak (frames, size, the denoiser's
    size) before sampling, name what to lower, and leave no run behind; a small one runs."""
    import numpy as np
    from PIL import Image

    from vcstudio.jobs.i2v_ab import I2VABConfig
    from vcstudio.jobs.i2v_tune import I2VTuneJobConfig
    from vcstudio.jobs.registry import REGISTRY
    from vcstudio.models.svd import build_tiny_svd
    from vcstudio.pipelines.i2v.tune import I2VTuneConfig

    svd = build_tiny_svd(tmp_path / "svd", frames=4)
    img = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(img)
    (tmp_path / "meminfo").write_text("MemAvailable: 1048576 kB\n")  # 1 GiB available
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(memory, "CGROUP", str(tmp_path / "no-cgroup"))
    from vcstudio.config import Limits

    with Studio(tmp_path / "data", jobs=REGISTRY, device="cpu",
                limits=Limits(max_frames=128, max_side=1024)) as studio:
        # 128 frames at 1024^2: ~1.1 GiB of frames and their copies
        with pytest.raises(OutOfMemoryError, match=r"(?i)an image-to-video generation of 128 "
                                                   r"frames at 1024x1024 .* lower frames or size"):
            studio.run("i2v_ab", I2VABConfig(model=str(svd), image=str(img), frames=128,
                                             size=1024, steps=2))
        with pytest.raises(OutOfMemoryError, match=r"(?i)a VCD reward tune of 128 frames"):
            studio.run("i2v_tune", I2VTuneJobConfig(model=str(svd), images=[str(img)],
                                                    tune=I2VTuneConfig(num_frames=128,
                                                                       height=1024, width=1024,
                                                                       steps=1)))
        assert studio.store.list_runs() == []
        out = studio.run("i2v_ab", I2VABConfig(model=str(svd), image=str(img), frames=4,
                                               size=32, steps=2))
        assert out.frames.shape == (4, 32, 32, 3)
