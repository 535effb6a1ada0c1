"""Opt-in (``-m browser``): the plots as a visitor sees them, in headless Chromium, on the app
started as the README says. A 20-step tune: its preview shows up and the loss figure (real
values, one panel per axis) fits its column; an edit: the per-frame metrics figure; the Long
tab's Plan with prompts given one per line: the timeline figure at a readable size, no label
over it, and the scene graph listing the prompts. Screenshots in test-artifacts/plots/."""
import shutil
from pathlib import Path

import pytest

from app_process import app_py as start_app
from test_browser_smoke import CHROMIUM, _figure, _need_browser, _no_error_on_screen

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "plots"
PROMPTS = ["a red circle moves right on the beach", "it jumps over a blue square",
           "a blue square moves left on the grass"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    _need_browser()
    with start_app(tmp_path_factory.mktemp("plots-app")) as a:
        yield a


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64, dx=3.0), tmp_path_factory.mktemp("clip") / "c.mp4")


def test_tune_edit_and_plan_figures_read_well(app, clip):
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking"])
        try:
            pg = b.new_page(viewport={"width": 1400, "height": 1100})
            pg.goto(app["url"], wait_until="load")
            pg.wait_for_selector("text=Edit from Video", timeout=60000)
            tab = pg.locator("#edit-tab")
            tab.locator("#edit-clip input[type=file]").set_input_files(str(clip))
            pg.locator("#edit-strip-info").get_by_text("will be tuned on").first.wait_for(
                timeout=60000)
            tab.get_by_label("Source prompt: what the clip shows").fill("a red circle")
            for label, value in (("Frames", "4"), ("Tuning steps", "20")):
                box = tab.get_by_label(label).first
                box.fill(value)
                box.press("Enter")
            pg.wait_for_timeout(800)
            tab.get_by_role("button", name="Tune", exact=True).click()
            try:
                # the preview shows up while the tune runs (at a fifth of the steps)
                pg.wait_for_function("() => { const i = document.querySelector("
                                     "'#edit-tune-preview img'); return i && "
                                     "i.naturalWidth > 0; }", timeout=300000)
                during = pg.locator("#edit-status").inner_text()
                pg.locator("#edit-status").get_by_text("Now type an edit prompt").first \
                    .wait_for(timeout=600000)
                loss = _figure(pg, "edit-loss-figure")
                pg.wait_for_timeout(1000)
                pg.locator("#edit-loss-figure").scroll_into_view_if_needed()
            finally:
                pg.screenshot(path=str(SHOTS / "edit-after-tune.png"), full_page=True)
            assert "Tuned" not in during, during  # it came before the tune ended
            _no_error_on_screen(pg, "tune")
            assert loss["natural"][0] >= 600 and loss["inside"], loss
            assert loss["shown"][0] >= 400, loss  # readable, not shrunk to a strip

            tab.get_by_label("Edit prompt: what the video should show").fill("a blue square")
            esteps = tab.get_by_label("Sampling steps").first
            esteps.fill("5")
            esteps.press("Enter")
            pg.wait_for_timeout(500)
            tab.get_by_role("button", name="Generate edit", exact=True).click()
            pg.locator("#edit-estatus").get_by_text("Done.").first.wait_for(timeout=400000)
            metrics = _figure(pg, "edit-metric-figure", 400)  # 3 metrics: two rows of panels
            pg.locator("#edit-metric-figure").scroll_into_view_if_needed()
            pg.screenshot(path=str(SHOTS / "edit-after-edit.png"), full_page=True)
            assert metrics["inside"] and metrics["shown"][0] >= 400, metrics
            _no_error_on_screen(pg, "edit")

            # the Long tab: prompts one per line -> the timeline figure and the scene graph
            pg.get_by_role("tab", name="Long Video").click()
            long_tab = pg.locator("#long-tab")
            long_tab.get_by_label("…or one prompt per segment (one per line)").fill(
                "\n".join(PROMPTS))
            long_tab.get_by_role("button", name="Plan", exact=True).click()
            pg.wait_for_function("() => { const i = document.querySelector('#long-plan img');"
                                 " return i && i.complete && i.naturalWidth > 0; }",
                                 timeout=60000)
            plan = pg.evaluate("""() => {
                const i = document.querySelector('#long-plan img');
                const r = i.getBoundingClientRect();
                const labels = Array.from(document.querySelectorAll(
                    '#long-plan [data-testid="block-label"]')).filter(
                    l => l.getBoundingClientRect().height > 0);
                return {natural: [i.naturalWidth, i.naturalHeight], shown: [r.width, r.height],
                        labels: labels.length}; }""")
            pg.locator("#long-plan").scroll_into_view_if_needed()
            pg.screenshot(path=str(SHOTS / "long-plan.png"), full_page=True)
            assert plan["natural"][0] >= 900 and plan["shown"][0] >= 800, plan
            assert plan["shown"][1] >= 300 and plan["labels"] == 0, plan  # no label over it
            for text in PROMPTS:  # the scene graph lists the prompts as its segments
                assert long_tab.get_by_text(text).count() >= 1, text
            _no_error_on_screen(pg, "plan")
        finally:
            b.close()
    assert "Traceback" not in app["log"].read_text()
