"""The Gradio app driven through its HTTP API (gradio_client) and, opt-in, in headless Chromium."""
import os
import socket
from pathlib import Path

import pytest


APP_DATA = {}  # the launched app's data folder (its run store)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_sd, tmp_path_factory):
    os.environ["VCSTUDIO_MODEL"] = str(tiny_sd)
    data = tmp_path_factory.mktemp("appdata")
    APP_DATA["dir"] = data
    from vcstudio.session import Studio
    from vcstudio.space import safe_limits
    from vcstudio.ui import build_app

    studio = Studio(data, limits=safe_limits())
    demo = build_app(studio)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                show_error=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    studio.close()
    os.environ.pop("VCSTUDIO_MODEL", None)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64), tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_building_the_app_raises_no_gradio_warning(tmp_path):
    """A component built with a value its choices lack (a dropdown that takes any Hub id, say,
    without allow_custom_value) warns at every start; the app builds silent."""
    import warnings

    from vcstudio.session import Studio
    from vcstudio.ui import build_app

    studio = Studio(tmp_path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build_app(studio)
    finally:
        studio.close()
    said = [str(w.message)[:120] for w in caught
            if issubclass(w.category, UserWarning) and "gradio" in w.filename]
    assert said == [], said


def test_plan_endpoint_parses_story_and_draws_layout(app_url):
    from gradio_client import Client

    c = Client(app_url, verbose=False)
    graph, segs, layout, _ = c.predict(story="a dog runs on the beach, then it jumps into the "
                                             "sea", frames=20, window=8, stride=4,
                                       fusion="pyramid", api_name="/long_plan")
    rows = segs["data"]
    assert len(rows) == 2 and "jump" in rows[1][0]
    assert rows[0][1] == 0 and rows[-1][2] == 19  # the segments cover all 20 frames
    assert Path(layout).is_file()


def test_tune_then_edit_through_the_api(app_url, clip_file):
    from gradio_client import Client, handle_file

    c = Client(app_url, verbose=False)
    out = c.predict(clip=handle_file(str(clip_file)), prompt="a red circle", frames=4,
                    stride=1, width=64, height=64, steps=10, lr=1e-3, api_name="/tune")
    sid, job, status, loss, preview, run_dir = out
    assert run_dir and "Tuned 10 steps" in status
    res = c.predict(session=sid, run_dir=run_dir, prompt="a blue square", steps=5,
                    guidance=5.0, api_name="/edit")
    video, gif, estatus, plot, table = res
    assert estatus == "Done." and Path(video["video"] if isinstance(video, dict) else video).exists()
    names = [r[0] for r in table["data"]]
    assert "warp_error" in names and "consistency_adjacent" in names
    # the per-frame plot reaches a client as API.md says: its settings + "value" (the rows),
    # real values each with its metric's axis and unit (nothing normalised to 0-1)
    cols = plot["value"]["columns"]
    assert {"frame", "value", "raw", "series", "axis"} <= set(cols)
    rows = [dict(zip(cols, r)) for r in plot["value"]["data"]]
    clip = [r for r in rows if r["series"] == "clip_text"]
    assert clip and all(r["axis"] == "CLIP text alignment (100 x cos)" for r in clip)
    assert all(r["value"] == r["raw"] for r in rows)
    mean = float(next(r[1] for r in table["data"] if r[0] == "clip_text"))
    assert sum(r["value"] for r in clip) / len(clip) == pytest.approx(mean, abs=1e-3)
    assert {r["axis"] for r in rows if r["series"] == "warp_error"} == {
        "warp error (MSE of RGB in 0-1)"}
    # the loss rows: every step's real loss, on the denoising-loss axis
    lcols = loss["value"]["columns"]
    lrows = [dict(zip(lcols, r)) for r in loss["value"]["data"]]
    assert [r["step"] for r in lrows if r["series"] == "loss"] == list(range(1, 11))
    assert {r["axis"] for r in lrows} == {"denoising loss"} and not any(r["earlier"]
                                                                        for r in lrows)
    assert preview is not None  # 10 steps: previews at step 2 and at the last step


def test_bad_input_is_a_message_and_the_app_keeps_working(app_url, clip_file):
    from gradio_client import Client, handle_file

    c = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="source prompt|Describe the clip"):
        c.predict(clip=handle_file(str(clip_file)), prompt="", frames=4, width=64, height=64,
                  steps=10, api_name="/tune")
    with pytest.raises(Exception, match="window"):
        c.predict(prompts="a\nb", frames=8, window=16, stride=4, fusion="uniform",
                  api_name="/long_plan")
    graph, segs, layout, _ = c.predict(prompts="a\nb", frames=16, window=8, stride=4,
                                       fusion="uniform", api_name="/long_plan")
    assert len(segs["data"]) == 2


@pytest.mark.browser
def test_browser_tabs_and_edit_flow(app_url, clip_file, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(__file__).resolve().parents[1] / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking"])
        pg = b.new_page(viewport={"width": 1400, "height": 1100})
        pg.goto(app_url, wait_until="load")
        pg.wait_for_selector("text=Edit from Video", timeout=60000)
        pg.locator("#edit-clip input[type=file]").set_input_files(str(clip_file))
        pg.get_by_label("Source prompt: what the clip shows").fill("a red circle")
        steps = pg.locator("#edit-tab").get_by_label("Tuning steps").first
        steps.fill("20")  # a quick tune
        steps.press("Enter")
        pg.wait_for_timeout(1500)
        pg.get_by_role("button", name="Tune", exact=True).click()
        try:
            pg.wait_for_selector("text=Now type an edit prompt", timeout=240000)
        finally:
            pg.screenshot(path=str(shots / "after-tune.png"), full_page=True)
        pg.get_by_label("Edit prompt: what the video should show").fill("a blue square")
        pg.get_by_role("button", name="Generate edit", exact=True).click()
        pg.wait_for_selector("video", timeout=240000)
        pg.wait_for_selector("text=Done.", timeout=240000)
        pg.screenshot(path=str(shots / "edit.png"), full_page=True)
        for name in ["Long Video", "I2V Consistency", "Compare Methods"]:
            pg.get_by_role("tab", name=name).click()
            pg.wait_for_timeout(500)
            pg.screenshot(path=str(shots / f"{name.split()[0].lower()}.png"), full_page=True)
        # the Long Video plan: a story -> segments, the window layout picture
        pg.get_by_role("tab", name="Long Video").click()
        long_tab = pg.locator("#long-tab")
        long_tab.get_by_label("Story (parsed into timed segments)").fill(
            "a red circle moves right on the beach, then a blue square moves left on the grass")
        long_tab.get_by_role("button", name="Plan", exact=True).click()
        pg.wait_for_selector("#long-tab img", timeout=60000)
        assert long_tab.get_by_text("a blue square moves left on the grass").count() >= 1
        pg.screenshot(path=str(shots / "long-plan.png"), full_page=True)
        pg.get_by_role("tab", name="Compare Methods").click()
        # a two-method comparison (baseline + DCT, the default ticks) on the Compare tab
        tab = pg.locator("#compare-tab")
        tab.locator("input[type=file]").first.set_input_files(str(clip_file))
        tab.get_by_label("Source prompt").fill("a red circle")
        tab.get_by_label("Edit prompt").fill("a blue square")
        for label, value in (("Tuning steps", "10"), ("Frames", "4")):
            box = tab.get_by_label(label).first
            box.fill(value)
            box.press("Enter")
        pg.wait_for_timeout(1500)
        tab.get_by_role("button", name="Compare", exact=True).click()
        try:
            pg.wait_for_selector("text=Done: best per column", timeout=400000)
        finally:
            pg.screenshot(path=str(shots / "compare-done.png"), full_page=True)
        assert tab.locator("video").count() >= 1
        assert tab.get_by_text("★").count() >= 1
        b.close()


def test_compare_runs_a_method_then_adds_it_back_as_a_past_run(app_url, clip_file):
    from gradio_client import Client, handle_file

    c = Client(app_url, verbose=False)
    base = "baseline (Tune-A-Video)"
    status, video, table, plot, files, choices = c.predict(
        clip=handle_file(str(clip_file)), prompt="a red circle", edit_prompt="a blue square",
        methods=[base], past_runs=[], frames=4, size=64, steps=10, seed=33,
        api_name="/compare")
    assert status.startswith("Done") and len(table["data"]) == 1
    from vcstudio.store import Store

    store = Store(APP_DATA["dir"], recover=False)  # a reader beside the app's own store
    past = store.list_runs(kind="compare")
    store.close()
    assert len(past) == 1 and past[0].label == base
    # the past run + the same method at another seed: two rows, each metric column starred once
    status, video, table, plot, files, _ = c.predict(
        clip=handle_file(str(clip_file)), prompt="a red circle", edit_prompt="a blue square",
        methods=[base], past_runs=[past[0].id], frames=4, size=64, steps=10, seed=34,
        api_name="/compare")
    rows = table["data"]
    assert len(rows) == 2 and table["headers"][0] == "method"
    for col in range(1, len(table["headers"])):
        assert sum(str(r[col]).startswith("★") for r in rows) <= 1
    assert any(str(v).startswith("★") for r in rows for v in r[1:])
    assert sorted(Path(f).suffix for f in files) == [".csv", ".json"]
    vpath = video["video"] if isinstance(video, dict) else video
    from vcstudio.io import read_video

    v = read_video(vpath)
    assert v.shape[0] == 4 and v.shape[2] > 2 * 64  # two clips side by side
