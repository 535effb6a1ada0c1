"""`vcstudio bench serve`, the load and fault test of the running app: its answer classes, its
refusal of non-local hosts, and a short real run (2 visitors, 60 s, against `python app.py`
started as a public Space) that must end with nothing unhandled, nothing leaked and an intact
store. The memory and TTL claims belong to the long run (10 visitors, 10 minutes)."""
import pytest

from vcstudio.bench import serve as bs


def test_answers_are_classified_by_what_the_visitor_would_see():
    from gradio_client.exceptions import AppError

    assert bs.classify(AppError("Frames must be between 1 and 8, got 0."))[0] == "message"
    # Gradio's generic error (a handler raised something that is not a gr.Error), the UI's
    # wrapper of a non-VcsError and the job runner's crash report are bugs, not messages
    for text in ("The upstream Gradio app has raised an exception but has not enabled "
                 "verbose error reporting. To enable, set show_error=True in launch().",
                 "Something went wrong (KeyError: 'x'). The studio is still running",
                 "Internal error (TypeError: bad). This is a bug in vcstudio", "", "Error"):
        assert bs.classify(AppError(text))[0] == "unhandled", text
    assert bs.classify(TimeoutError())[0] == "timeout"
    assert bs.classify(ConnectionError("reset by peer"))[0] == "unhandled"


def test_the_server_log_counts_crashes_not_the_messages_shown():
    shown = ("Traceback (most recent call last):\n  File \"a.py\", line 1\n"
             "vcstudio.errors.InputError: Upload a clip first.\n\n"
             "During handling of the above exception, another exception occurred:\n\n"
             "Traceback (most recent call last):\n  File \"b.py\", line 2\n"
             "gradio.exceptions.Error: 'Upload a clip first.'\n")
    crash = "Traceback (most recent call last):\n  File \"c.py\", line 3\nKeyError: 'frames'\n"
    assert bs.server_exceptions(shown) == []
    assert bs.server_exceptions(shown + crash) == ["KeyError: 'frames'"]


def test_only_local_hosts_are_driven():
    from vcstudio.errors import VcsError

    assert bs.check_local("http://127.0.0.1:7860") == "http://127.0.0.1:7860/"
    for url in ("http://example.com:7860/", "https://user.hf.space/", "ftp://127.0.0.1/"):
        with pytest.raises(VcsError, match="127.0.0.1"):
            bs.check_local(url)


def test_two_visitors_for_a_minute_leave_nothing_unhandled_or_leaked():
    """About 80 s: app start, 60 s of two visitors, their jobs' end, a device probe."""
    r = bs.run_bench_serve(visitors=2, minutes=1.0, public=True, grace_s=30.0,
                           log=lambda msg: None)
    table = bs.format_table(r)
    t = r["totals"]
    assert t["requests"] >= 6, table
    assert t["unhandled"] == 0, table
    assert t["leaked"] == 0, table
    assert r["integrity"] == "ok", table
    assert r["peak_rss_mib"] and r["peak_rss_mib"] > 100, table  # the sampler read the app
    att = r["attacker"]  # the stranger among them tried, and got nothing
    assert att["tries"] > 50 and att["n_successes"] == 0, table


def test_a_job_that_ends_long_after_its_client_left_is_leaked():
    """Judged by its last progress event: j1 was expired by the TTL cleanup much later
    (its `updated`), but stopped 4 s after its client left."""
    tally = bs.Tally()
    tally.add(bs.Answer("disconnect", "done", 1.0))
    tally.gone = {"j1": 100.0, "j2": 100.0}
    jobs = [{"id": "j1", "kind": "tune", "status": "stopped", "session_id": "s", "updated": 500.0,
             "step": 3, "total": 60, "error": None, "last_event": 104.0},
            {"id": "j2", "kind": "tune", "status": "cancelled", "session_id": "s",
             "updated": 190.0, "step": 50, "total": 60, "error": None, "last_event": 190.0}]
    samples = [(0.0, 1000.0, 1000.0, 1.0, 0.0, 5), (70.0, 1100.0, 1100.0, 2.0, 0.0, 6)]
    r = bs.summarise(tally, samples, jobs, [], (True, ""), "ok",
                     {"grace_s": 30.0, "visitors": 1, "minutes": 1, "public": True,
                      "url": "u", "wall_s": 80.0, "visits": 1})
    assert r["totals"]["leaked"] == 1
    assert r["jobs"]["ended_late_after_disconnect"] == [
        {"id": "j2", "status": "cancelled", "seconds_after": 90.0}]
    assert r["peak_rss_mib"] == 1100.0 and r["integrity"] == "ok"
    assert "leaked 1" in bs.format_table(r)
