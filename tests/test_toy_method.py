"""A new tuning method is one module + one registration call (issue 26): a toy method with one
switch and one loss term, registered here, shows up in the CLI's flags (and lands in the
TuneConfig), the UI's method choice and switch panel, Compare's method list and its
validation, and the loss plots' terms -- without any other file naming it."""
from __future__ import annotations

import dataclasses
import sys

import pytest

TOY_MODULE = '''
from dataclasses import dataclass

from vcstudio.methods.base import LOSS_AXIS, Plotted, TuneMethod
from vcstudio.settings import setting


@dataclass
class ToyConfig:
    weight: float = setting(0.1, lo=0, hi=10, flag="--toy-weight", label="Toy weight",
                            help="weight of the toy term")


class ToyMethod(TuneMethod):
    """The baseline plus weight * mean(pred^2) (a term that exists only to be plotted)."""

    name = "toy"
    sections = ("toy",)
    config = ToyConfig
    switches = ("weight",)
    plotted = (Plotted("loss", LOSS_AXIS, "loss"), Plotted("toy", "toy term", "toy"))

    def extra_losses(self, s):
        return {"toy": self.cfg.toy.weight * s.pred.float().pow(2).mean()}
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy method's module written as a file of its own and imported, then registered."""
    import importlib

    from vcstudio.methods import registry

    (tmp_path / "vcs_toy_method.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("vcs_toy_method")
    registry.register(mod.ToyMethod)  # the one registration call
    try:
        yield mod
    finally:
        registry.unregister("toy")
        sys.modules.pop(mod.__name__, None)


def test_toy_method_reaches_cli_config_and_validation(toy):
    from vcstudio.cli import build_parser, tune_config_from_args
    from vcstudio.config import Limits, TuneConfig, from_dict, to_dict
    from vcstudio.errors import InputError
    from vcstudio.jobs.tune import validate

    a = build_parser().parse_args(["tune", "--video", "clip.mp4", "--prompt", "a toy",
                                   "--method", "toy", "--toy-weight", "0.5"])
    cfg = tune_config_from_args(a)
    assert (cfg.method, cfg.toy.weight) == ("toy", 0.5)
    assert tune_config_from_args(build_parser().parse_args(
        ["tune", "--prompt", "x", "--method", "toy"])).toy.weight == 0.1  # the declared default
    # the section is saved and read back as a top-level key, as dct/apla/fgbg are
    d = to_dict(cfg)
    assert d["toy"] == {"weight": 0.5} and from_dict(TuneConfig, d) == cfg
    ok = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, width=64, height=64))
    validate(ok, Limits())
    # the tune job checks its range from its declaration, as every setting's
    with pytest.raises(InputError, match=r"toy.weight \(--toy-weight\) must be within "
                                         r"\[0, 10\]; got 11.0"):
        validate(dataclasses.replace(ok, toy=dataclasses.replace(ok.toy, weight=11.0)),
                 Limits())


def test_toy_method_reaches_ui_compare_and_plots(toy):
    import gradio as gr

    from vcstudio.jobs.compare import CompareConfig, variants
    from vcstudio.methods import registry
    from vcstudio.ui.settings_widgets import method_panel

    assert "toy" in registry.pickable() and registry.pickable()[-1] == "apla+dct"
    with gr.Blocks():
        panel = method_panel()
    w = panel["toy"]["weight"]
    assert (type(w).__name__, w.label, w.value) == ("Number", "Toy weight", 0.1)
    assert set(panel) == {"dct", "apla", "toy"}  # fgbg needs masks: not a picker's method
    # Compare: the toy is a variant by its name
    assert "toy" in registry.presets()
    cfg = CompareConfig(video="clip.mp4", prompt="a toy", edit_prompt="a red toy",
                        variants=["baseline", "toy"])
    vs = variants(cfg)
    assert [v.tune.method for v in vs] == ["baseline", "toy"]
    assert list(registry.plotted_terms(vs[1].tune)) == ["loss", "toy"]


def test_toy_method_reaches_the_edit_tab(toy, tmp_path):
    """The Edit tab's Method choice offers it (the app is built after registration)."""
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui import build_app

    st = make_studio(tmp_path / "data", device="cpu", limits=Limits())
    app = build_app(st)
    radios = [b for b in app.blocks.values() if type(b).__name__ == "Radio"
              and b.label == "Method"]
    assert radios and all("toy" in [c[0] for c in r.choices] for r in radios)


def test_unregistered_toy_is_gone():
    from vcstudio.config import TuneConfig
    from vcstudio.errors import InputError
    from vcstudio.methods import registry

    assert "toy" not in registry.pickable()
    with pytest.raises(InputError, match="Unknown method 'toy'"):
        registry.check_name("toy")
    assert not hasattr(TuneConfig(), "toy")
