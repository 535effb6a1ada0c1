"""Method defaults that follow their papers (issue 15.4): APLA tunes 750 steps (1500 in its long
setting, a preset); DCT samples without classifier-free guidance (a preset); presets live on the
method classes and carry the edit settings their samples use."""
import argparse

from vcstudio.config import EditConfig
from vcstudio.methods import registry


def _tune_args(*extra):
    from vcstudio.cli import tune as cli_tune

    p = argparse.ArgumentParser()
    cli_tune.add(p.add_subparsers())
    a = p.parse_args(["tune", "--video", "x.mp4", "--prompt", "a red circle", "--model", "m",
                      *extra])
    return cli_tune.tune_config_from_args(a)


def test_apla_tunes_750_steps_by_default_and_1500_as_a_preset():
    assert registry.paper_defaults("apla") == {"steps": 750}
    assert _tune_args("--method", "apla").steps == 750
    assert _tune_args("--method", "apla", "--steps", "20").steps == 20  # given: kept
    assert _tune_args("--method", "baseline").steps == 500  # Tune-A-Video's
    assert _tune_args("--method", "dct").steps == 500  # DCT sec. 4: 500 steps
    long = registry.find_preset("apla-1500")
    assert long.changes == {"method": "apla", "steps": 1500}
    assert registry.find_preset("APLA full, 1500 steps (long setting)") is not None


def test_dct_as_published_samples_without_guidance_in_compare():
    from vcstudio.jobs.compare import CompareConfig, variants

    p = registry.find_preset("dct-paper")
    assert p.changes == {"method": "dct"} and p.edit == {"guidance": 1.0}
    assert registry.apply_changes(EditConfig(guidance=12.5), p.edit).guidance == 1.0
    cfg = CompareConfig(video="v.mp4", prompt="a", edit_prompt="b",
                        variants=["baseline", "dct", "dct-paper", "apla-1500"], guidance=7.5,
                        steps=40)
    got = {v.label: (v.tune.method, v.tune.steps, v.edit.guidance) for v in variants(cfg)}
    assert got == {"baseline (Tune-A-Video)": ("baseline", 40, 7.5),
                   "DCT full (mul-Fourier CLWS)": ("dct", 40, 7.5),
                   "DCT as published (no CFG)": ("dct", 40, 1.0),
                   "APLA full, 1500 steps (long setting)": ("apla", 1500, 7.5)}
