"""The inversion prompt (issue 15.2): Tune-A-Video DDIM-inverts the clip under the empty prompt
and samples the edit with guidance; vcstudio does the same by default, the source prompt (or any
text) on request, recorded in meta.json, the inversion cached per step count and prompt."""
import json

import pytest
import torch

from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.errors import InputError
from vcstudio.models.cache import ModelCache
from vcstudio.models.delta import load_tensors
from vcstudio.models.encode import encode_prompts
from vcstudio.pipelines.tune.loop import inversion_latents, load_tuned, tune
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a red circle moving right"
STEPS = 6


@pytest.fixture(scope="module")
def run_dir(tiny_sd, tmp_path_factory):
    from vcstudio.io.synthetic import moving_shape_clip

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt=PROMPT, n_frames=4, width=64,
                                                         height=64),
                     steps=2, lr=1e-3, checkpoint_every=0, inversion_steps=STEPS)
    return tune(cfg, tmp_path_factory.mktemp("inv") / "run", frames=moving_shape_clip(4, 64),
                run=RunContext(cache=ModelCache())).run_dir


def tav_next_step_inversion(model, scheduler_config, latent, cond, steps):
    """Tune-A-Video's ddim_loop / next_step, written out from its formula: walk the DDIM
    timesteps upwards; at each t the noise predicted at (x, t) moves x from the previous
    timestep s = t - 1000 // steps (alpha_s = the final alpha when s < 0) to t:
        x0 = (x - sqrt(1 - alpha_s) eps) / sqrt(alpha_s);  x <- sqrt(alpha_t) x0 + sqrt(1 - alpha_t) eps
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps)
    ts = sched.timesteps
    x = latent.clone()
    with torch.no_grad():
        for i in range(steps):
            t = int(ts[len(ts) - i - 1])
            eps = model(x, torch.tensor(t), cond).float()
            s = min(t - sched.config.num_train_timesteps // sched.num_inference_steps, 999)
            a_s = sched.alphas_cumprod[s] if s >= 0 else sched.final_alpha_cumprod
            a_t = sched.alphas_cumprod[t]
            x0 = (x - (1 - a_s) ** 0.5 * eps) / a_s ** 0.5
            x = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps
    return x


def test_default_inversion_is_tune_a_videos_empty_prompt_loop(run_dir):
    tuned = load_tuned(run_dir, ModelCache())
    assert tuned.cfg.inversion_prompt == ""
    assert json.loads((run_dir / "meta.json").read_text())["inversion_prompt"] == ""
    lat0 = load_tensors(run_dir / "clip-latents.safetensors")[0]["latents"]
    want = tav_next_step_inversion(tuned.model, tuned.base.scheduler_config, lat0,
                                   encode_prompts(tuned.base, [""]), STEPS)
    cached = run_dir / f"inversion-{STEPS}-empty.safetensors"  # written by tune itself
    tensors, meta = load_tensors(cached)
    assert meta["prompt"] == "" and meta["steps"] == STEPS
    torch.testing.assert_close(tensors["latents"], want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(inversion_latents(tuned, STEPS), want, atol=1e-4, rtol=1e-4)

    # "source": the tuning prompt, its own cache file, a different start for the edit
    src = inversion_latents(tuned, STEPS, prompt="source")
    want_src = tav_next_step_inversion(tuned.model, tuned.base.scheduler_config, lat0,
                                       encode_prompts(tuned.base, [PROMPT]), STEPS)
    torch.testing.assert_close(src, want_src, atol=1e-4, rtol=1e-4)
    assert (src - want).abs().max() > 1e-3
    assert load_tensors(run_dir / f"inversion-{STEPS}.safetensors")[1]["prompt"] == PROMPT
    # the cache answers per prompt: a second call reads the file, the default still the empty one
    torch.testing.assert_close(inversion_latents(tuned, STEPS), tensors["latents"])


def test_edit_inverts_under_its_own_setting(run_dir):
    from vcstudio.pipelines.edit.edits import edit_frames

    tuned = load_tuned(run_dir, ModelCache())
    e = EditConfig(prompt="a blue square moving right", steps=STEPS, guidance=4.0, seed=3)
    default = edit_frames(tuned, e)
    again = edit_frames(tuned, EditConfig(**{**e.__dict__, "inversion_prompt": ""}))
    src = edit_frames(tuned, EditConfig(**{**e.__dict__, "inversion_prompt": "source"}))
    assert (default == again).all() and (default != src).any()


def test_run_recorded_before_the_setting_inverts_under_its_source_prompt(run_dir, tmp_path):
    """A config.yaml without inversion_prompt was tuned when inversion used the source prompt:
    it loads with that behaviour (and its old inversion-N.safetensors cache stays valid)."""
    import shutil

    import yaml

    from vcstudio.runs.open import open_run

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    d = yaml.safe_load((old / "config.yaml").read_text())
    d.pop("inversion_prompt")
    (old / "config.yaml").write_text(yaml.safe_dump(d))
    assert open_run(old).config().inversion_prompt == "source"


def test_cli_flags_and_bad_values(tmp_path):
    import argparse

    from vcstudio.cli import edit as cli_edit, tune as cli_tune
    from vcstudio.pipelines.edit.edits import validate_edit
    from vcstudio.validate import check_inversion_prompt

    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    cli_tune.add(sub)
    cli_edit.add(sub)
    a = p.parse_args(["tune", "--video", "x.mp4", "--prompt", PROMPT, "--model", "m",
                      "--inversion-prompt", "source"])
    assert cli_tune.tune_config_from_args(a).inversion_prompt == "source"
    a = p.parse_args(["tune", "--video", "x.mp4", "--prompt", PROMPT, "--model", "m"])
    assert cli_tune.tune_config_from_args(a).inversion_prompt == ""
    a = p.parse_args(["edit", "--run", "r", "--prompt", "p", "--inversion-prompt", ""])
    assert a.inversion_prompt == ""
    check_inversion_prompt("a dog")
    with pytest.raises(InputError, match="inversion_prompt"):
        check_inversion_prompt(3)
    with pytest.raises(InputError, match="UTF-8"):
        validate_edit(EditConfig(prompt="p", inversion_prompt="\udcff"))


def test_target_inverts_under_each_edits_own_prompt(run_dir):
    """"target": the clip is inverted under the edit's prompt (on the demo model it keeps the
    object in frames of the bundled examples' edits that the empty prompt's lost), cached per
    prompt; an edit with "target" is the edit with that text named, not the empty prompt's."""
    from vcstudio.pipelines.edit.edits import edit_frames

    tuned = load_tuned(run_dir, ModelCache())
    e = EditConfig(prompt="a blue square moving right", steps=STEPS, guidance=4.0, seed=3,
                   inversion_prompt="target")
    lat0 = load_tensors(run_dir / "clip-latents.safetensors")[0]["latents"]
    want = tav_next_step_inversion(tuned.model, tuned.base.scheduler_config, lat0,
                                   encode_prompts(tuned.base, [e.prompt]), STEPS)
    got = inversion_latents(tuned, STEPS, prompt="target", target=e.prompt)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    cached = [p for p in run_dir.glob(f"inversion-{STEPS}-*.safetensors")
              if load_tensors(p)[1]["prompt"] == e.prompt]
    assert len(cached) == 1
    target = edit_frames(tuned, e)
    named = edit_frames(tuned, EditConfig(**{**e.__dict__, "inversion_prompt": e.prompt}))
    empty = edit_frames(tuned, EditConfig(**{**e.__dict__, "inversion_prompt": ""}))
    assert (target == named).all() and (target != empty).any()


def test_a_target_tune_skips_the_inversion_no_edit_could_reuse(tiny_sd):
    import argparse

    from vcstudio.cli import tune as cli_tune
    from vcstudio.config import inverts_after_tuning
    from vcstudio.jobs.tune import estimate

    p = argparse.ArgumentParser()
    cli_tune.add(p.add_subparsers())
    a = p.parse_args(["tune", "--video", "x.mp4", "--prompt", PROMPT, "--model", str(tiny_sd),
                      "--inversion-prompt", "target"])
    cfg = cli_tune.tune_config_from_args(a)
    assert cfg.inversion_prompt == "target" and not inverts_after_tuning(cfg)
    d = DataConfig(prompt=PROMPT, n_frames=4, width=64, height=64)
    cost = {ip: estimate(TuneConfig(model=str(tiny_sd), data=d, steps=10, inversion_steps=20,
                                    inversion_prompt=ip), "cpu")["parts"]["inversion_s"]
            for ip in ("", "target")}
    assert cost[""] > 0 and cost["target"] == 0, cost
