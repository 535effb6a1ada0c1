"""The ground-truth edit benchmark (issue 29, part 3): its edit cases, the per-frame scoring on
rendered clips whose answer is known, the table and report, and a short `bench toy-edit` run
end to end on the tiny test model."""
import csv
import json

import numpy as np
import pytest
import torch

from vcstudio.toyworld import world
from vcstudio.toyworld.edits import ATTRIBUTES, edit_cases
from vcstudio.toyworld.render import render_clip
from vcstudio.toyworld.scoring import score_edit


def test_edit_cases_are_seeded_held_out_and_change_exactly_one_attribute():
    cases = edit_cases(18, seed=3)
    assert cases == edit_cases(18, seed=3) and cases != edit_cases(18, seed=4)
    held = set(world.combos("heldout"))
    pairs = set()
    for i, c in enumerate(cases):
        s, t = c.source.scene, c.target.scene
        assert c.changed == ATTRIBUTES[i % 3]  # colour, shape, background in turn
        assert (s.shape, s.colour, s.background) in held
        assert world.valid_combo(t.shape, t.colour, t.background)
        diff = [a for a in ("shape", "colour", "background", "size", "texture", "cx", "cy",
                            "seed") if getattr(s, a) != getattr(t, a)]
        assert diff == [c.changed]
        assert c.target.motion == c.source.motion
        assert np.array_equal(world.trajectory(c.source), world.trajectory(c.target))
        assert c.edit_prompt != c.source_prompt and getattr(t, c.changed) in c.edit_prompt
        pairs.add((c.source.motion, c.changed))
    assert len(pairs) == 18  # every (motion, attribute) pair once in 18 cases


class _MeanColour:
    """A stand-in CLIP: a frame's embedding is its mean colour (cosine 1 for equal frames)."""

    name = "mean-colour"

    def encode_images(self, frames):
        return torch.tensor(np.asarray(frames, np.float32).mean((1, 2)) + 1.0)


def test_scoring_knows_the_answers_on_rendered_clips():
    enc = _MeanColour()
    for case in edit_cases(6, seed=0):
        source, target = case.render(64)
        want_src = {"shape": case.source.scene.shape, "colour": case.source.scene.colour,
                    "background": case.source.scene.background}
        # the source scored as its own edit: everything kept, no track error
        same = score_edit(source, source, source, want_src, case.changed, enc)
        assert same.changed_attribute_acc == 1.0 and same.kept_attribute_acc == 1.0
        assert same.track_error_pct == 0.0 and same.psnr == np.inf
        assert same.ssim == pytest.approx(1.0)
        # the rendered target: the changed attribute reads as the target's, the track holds
        hit = score_edit(target, source, target, case.expected(), case.changed, enc)
        assert hit.changed_attribute_acc >= 0.85, case
        assert hit.kept_attribute_acc >= 0.9 and hit.track_error_pct < 1.0, (case, hit)
        # the unedited source against the target's answer: the edit did not happen
        miss = score_edit(source, source, target, case.expected(), case.changed, enc)
        assert miss.changed_attribute_acc == 0.0 and miss.kept_attribute_acc >= 0.9
        assert miss.psnr < hit.psnr and len(miss.per_frame["psnr"]) == len(source)
    # a clip played backwards: the track error is the mean distance between the two paths
    attrs = {"shape": "circle", "colour": "red", "background": "beach"}
    for motion, start in (("right", (0.25, 0.6)), ("up", (0.5, 0.75))):
        clip = world.Clip(world.Scene("circle", "red", "beach", cx=start[0], cy=start[1]),
                          motion)
        src = render_clip(clip, 64)
        err = score_edit(src[::-1].copy(), src, src, attrs, "colour", enc).track_error_pct
        geo = world.trajectory(clip)
        truth = 100 * np.mean(np.hypot(*(geo[::-1, :2] - geo[:, :2]).T))
        assert err == pytest.approx(truth, abs=1.0) and err > 10, motion
    # consistency: a still clip is 100, the stand-in's cosine of distinct frames less
    still = np.repeat(src[:1], 4, 0)
    assert score_edit(still, still, still, {"shape": "x", "colour": "y", "background": "z"},
                      "colour", enc).consistency == pytest.approx(100.0)
    noise = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    noise[1] = (255, 0, 0)  # a red frame among grey noise
    assert score_edit(noise, still, still, {"shape": "x", "colour": "y", "background": "z"},
                      "colour", enc).consistency < 99.0


def test_the_bundled_examples_are_cases_with_their_suggested_edits_and_known_answers():
    """--cases examples: the app's five example clips, two suggested edits each, as the Edit
    tab offers them; each changes two attributes at once, and the scoring reads both."""
    from vcstudio.toyworld.examples import example_clips, example_cases

    cases = example_cases()
    assert len(cases) == 10
    assert [c.edit_prompt for c in cases] == [p for _, _, ps in example_clips() for p in ps]
    enc = _MeanColour()
    for c in cases:
        assert c.source.motion == c.target.motion and c.edit_prompt != c.source_prompt
        s, t = c.source.scene, c.target.scene
        moved = [a for a in ATTRIBUTES if getattr(s, a) != getattr(t, a)]
        assert moved == list(c.changed_attributes) and c.kept == tuple(
            a for a in ATTRIBUTES if a not in moved)
        source, target = c.render(64)
        hit = score_edit(target, source, target, c.expected(), c.changed_attributes, enc)
        miss = score_edit(source, source, target, c.expected(), c.changed_attributes, enc)
        assert hit.changed_attribute_acc >= 0.85 and miss.changed_attribute_acc == 0.0, c
    # the first: shape and colour; a frame right in one of the two scores half
    first = cases[0]
    assert first.changed_attributes == ("colour", "shape")
    source, target = first.render(64)
    half = score_edit(source, source, target, {**first.expected(), "shape": "circle"},
                      first.changed_attributes, enc)
    assert half.changed_attribute_acc == pytest.approx(0.5, abs=0.13)


def test_table_stars_each_columns_best_and_the_report_checks_the_targets():
    from vcstudio.bench.toy_edit import COLUMNS, report_line, table_of

    def row(m, **kw):
        base = dict(changed_attribute_acc=0.8, kept_attribute_acc=0.9, track_error_pct=5.0,
                    psnr=20.0, ssim=0.7, consistency=95.0, seconds=60.0, max_seconds=90.0)
        return {"method": m, "n": 20, **{**base, **kw}}

    rows = [row("baseline"), row("dct", changed_attribute_acc=0.9, track_error_pct=7.0,
                                 seconds=80.0)]
    header, base, dct = table_of(rows)
    assert header == ["method", *COLUMNS]
    col = {c: i for i, c in enumerate(header)}
    assert dct[col["changed_attribute_acc"]].startswith("★")  # higher is better
    assert base[col["track_error_pct"]].startswith("★")  # lower is better
    assert base[col["seconds"]].startswith("★") and not dct[col["seconds"]].startswith("★")
    ok = {"model": "assets/toy-sd", "tier": "demo", "tier_defaults": True}
    line = report_line(rows, ok)
    assert "FAIL" not in line and line.count("pass") == 7
    # the targets are set on held-out clips: the bundled examples do not qualify
    assert "held-out cases FAIL" in report_line(rows, {**ok, "cases": "examples"})
    bad = report_line([row("baseline", kept_attribute_acc=0.5, max_seconds=150.0, n=4)],
                      {**ok, "tier_defaults": False})
    assert "kept attributes 0.5 (>= 0.85) FAIL" in bad and "slowest tune+edit s 150 (<= 120) FAIL" in bad
    assert "N 4 (>= 20) FAIL" in bad and "demo-tier defaults FAIL" in bad
    assert "changed attribute 0.8 (>= 0.7) pass" in bad
    assert "no baseline" in report_line([row("dct")], ok)


def test_bench_toy_edit_runs_end_to_end(tiny_sd, tmp_path, capsys, one_thread):
    """N = 2 on the tiny random model: a row per method, the JSON keys, scores in range, the
    table on stdout and the files written (random weights: the numbers themselves are poor)."""
    from vcstudio.cli import main

    out, js = tmp_path / "bench", tmp_path / "rows.json"
    rc = main(["bench", "toy-edit", "--n", "2", "--model", str(tiny_sd), "--steps", "2",
               "--edit-steps", "2", "--out", str(out), "--json", str(js), "--report",
               "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0
    rows = json.loads(js.read_text())["rows"]
    assert [r["method"] for r in rows] == ["baseline"]
    r = rows[0]
    assert {"method", "changed_attribute_acc", "kept_attribute_acc", "track_error_pct", "psnr",
            "ssim", "consistency", "seconds"} <= set(r) and r["n"] == 2
    assert 0 <= r["changed_attribute_acc"] <= 1 and 0 <= r["kept_attribute_acc"] <= 1
    assert 0 <= r["track_error_pct"] <= 100 and 0 < r["psnr"] < 60
    assert -1 <= r["ssim"] <= 1 and -100 <= r["consistency"] <= 100 and r["seconds"] > 0
    lines = text.strip().splitlines()
    assert lines[0].split() == ["method", "changed_attribute_acc", "kept_attribute_acc",
                                "track_error_pct", "psnr", "ssim", "consistency", "seconds"]
    assert lines[1].split()[0] == "baseline"
    assert lines[-2].startswith("report (baseline") and "N 2 (>= 20) FAIL" in lines[-2]
    assert lines[-1] == str(out)
    full = json.loads((out / "toy-edit.json").read_text())
    assert full["rows"] == rows and len(full["cases"]) == 2 and full["failed"] == []
    assert full["settings"]["steps"] == 2 and full["settings"]["frames"] == 8
    assert full["settings"]["inversion_prompt"] == ""  # the Edit tab's default
    with open(out / "cases.csv") as f:
        cases = list(csv.DictReader(f))
    assert [c["changed"] for c in cases] == ["colour", "shape"]
    for i in (1, 2):
        edit = next((out / f"case-0{i}" / "baseline" / "edit").glob("*.mp4"))
        assert edit.stat().st_size > 0 and (out / f"case-0{i}" / "target.mp4").is_file()
    # the bundled examples' first suggested edit: shape and colour at once
    ex = tmp_path / "examples"
    assert main(["bench", "toy-edit", "--cases", "examples", "--n", "1", "--model",
                 str(tiny_sd), "--steps", "2", "--edit-steps", "2", "--out", str(ex),
                 "--report", "--device", "cpu", "--inversion-prompt", "target"]) == 0
    out_text = capsys.readouterr().out
    assert "held-out cases FAIL" in out_text and "demo-tier defaults FAIL" in out_text
    assert (json.loads((ex / "toy-edit.json").read_text())["settings"]["inversion_prompt"]
            == "target")
    with open(ex / "cases.csv") as f:
        (case,) = list(csv.DictReader(f))
    assert case["changed"] == "colour+shape"
    assert case["edit_prompt"] == "a blue square moving right on the beach"


def test_bench_toy_edit_refuses_bad_settings_in_one_line(capsys):
    from vcstudio.cli import main

    assert main(["bench", "toy-edit", "--methods", "nope"]) == 2
    assert "Unknown method or preset 'nope'" in capsys.readouterr().err
    assert main(["bench", "toy-edit", "--n", "0"]) == 2
    assert "n (--n) must be within 1..10000" in capsys.readouterr().err
