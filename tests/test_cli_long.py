import argparse

import pytest

from vcstudio.cli.long import add_long_args, describe_timeline, parse_pair_list, parse_timeline
from vcstudio.errors import InputError
from vcstudio.scene.segments import Segment


def parse(*argv):
    return add_long_args(argparse.ArgumentParser()).parse_args(["--run", "r1", *argv])


def test_defaults_and_prompts():
    a = parse("--prompts", "a cat", "a dog", "a bird")
    # the fusion is the app's and the API's (LongConfig's), one default everywhere
    assert (a.window, a.stride, a.fusion, a.steps, a.guidance, a.seed) == (16, 8, "pyramid", 50, 12.5, 33)
    segs = parse_timeline(a)
    assert a.frames == 120
    assert segs == [Segment("a cat", 0, 40), Segment("a dog", 40, 80), Segment("a bird", 80, 120)]


def test_story():
    a = parse("--story", "a corgi runs on the beach, then jumps into the sea", "--frames", "30")
    segs = parse_timeline(a)
    assert [(s.prompt, s.start, s.end) for s in segs] == [
        ("a corgi runs on the beach", 0, 15), ("a corgi jumps into the sea", 15, 30)]
    text = describe_timeline(a, segs)
    assert "3 windows of 16" in text  # 30 frames: windows at 0, 8 and the tail window at 14
    assert "14-29" in text


def test_yaml_ranges_durations_strings_story(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("segments:\n  - {prompt: a, start: 0, end: 10}\n  - {prompt: b, start: 8, end: 24}\n")
    a = parse("--timeline", str(f))
    assert parse_timeline(a) == [Segment("a", 0, 10), Segment("b", 8, 24)] and a.frames == 24
    f.write_text("frames: 40\nsegments:\n  - {prompt: a, frames: 10}\n  - {prompt: b, frames: 30}\n")
    a = parse("--timeline", str(f))
    assert parse_timeline(a) == [Segment("a", 0, 10), Segment("b", 10, 40)] and a.frames == 40
    f.write_text("- one\n- two\n")
    a = parse("--timeline", str(f), "--frames", "9")
    assert parse_timeline(a) == [Segment("one", 0, 4), Segment("two", 4, 9)]
    f.write_text("story: a dog sleeps after the sun sets\nframes: 20\n")
    assert [s.prompt for s in parse_timeline(parse("--timeline", str(f)))] == ["the sun sets", "a dog sleeps"]


def test_timeline_errors(tmp_path):
    with pytest.raises(InputError, match="exactly one"):
        parse_timeline(parse())
    with pytest.raises(InputError, match="exactly one"):
        parse_timeline(parse("--prompts", "a", "--story", "b"))
    f = tmp_path / "t.yaml"
    f.write_text("segments:\n  - {prompt: a, start: 0, end: 10}\n  - {prompt: b, start: 12, end: 20}\n")
    with pytest.raises(InputError, match="Frames 10-11 have no prompt"):
        parse_timeline(parse("--timeline", str(f)))
    with pytest.raises(InputError, match="not found"):
        parse_timeline(parse("--timeline", str(tmp_path / "nope.yaml")))
    assert parse_pair_list("3,4", 2, "--mask-point") == (3.0, 4.0)
    with pytest.raises(InputError, match="4 comma-separated"):
        parse_pair_list("3,4", 4, "--mask-box")
