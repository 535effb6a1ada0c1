"""A public Space tried as a stranger would (issue: no visitor can read another's files or act
in another's session).

Visitor A tunes, edits and downloads their video. Visitor B is handed everything a stranger
could learn -- A's run folder, the data folder's path, A's session's public id (it is in the
run folder's path) and A's job id -- and tries every file route and every job endpoint with
them: nothing under the data folder is served, and nothing of A's is stopped, resumed, edited,
pushed or extended. A's secret appears in no path, no file and no answer of B's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app_launch import launch
from vcstudio.bench.attack import fetched, file_routes

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "examples" / "red_circle_right_beach.mp4"


@pytest.fixture(scope="module")
def public(tiny_sd, tmp_path_factory):
    data = tmp_path_factory.mktemp("public-sec")
    studio, demo, url = launch(tiny_sd, data, public=True)
    yield {"studio": studio, "demo": demo, "url": url, "data": data}
    demo.close()
    studio.close()
    os.environ.pop("VCSTUDIO_MODEL", None)


def test_a_stranger_reaches_no_file_and_no_job_of_another_visitor(public):
    from gradio_client import Client, handle_file

    url, studio, data = public["url"], public["studio"], public["data"]
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    sid_a, _, status, _, _, run_a = a.predict(
        clip=handle_file(str(CLIP)), prompt="a red circle moving right on the beach", frames=4,
        width=64, height=64, steps=10, api_name="/tune")
    assert status.startswith("Tuned"), status
    video, gif, status, *_ = a.predict(session=sid_a, run_dir=run_a, steps=5,
                                       prompt="a blue square moving right on the beach",
                                       api_name="/edit")
    assert status == "Done." and Path(video["video"] if isinstance(video, dict) else video
                                      ).stat().st_size > 0  # A downloads their own video
    run_a = Path(run_a)
    owner_a = run_a.parents[1].name  # sessions/<owner>/outputs/<run>: public, not a secret
    assert owner_a == studio.session(sid_a).owner and sid_a not in str(run_a)

    # A's secret is written nowhere: no folder or file name, no file under the data folder
    secret = sid_a.encode()
    for p in data.rglob("*"):
        assert sid_a not in str(p)
        if p.is_file() and p.stat().st_size < 50 * 2**20:
            assert secret not in p.read_bytes(), p

    # B fetches no file under the data folder, however named
    targets = [data / "vcstudio.db", data / "vcstudio.db-wal", data / "vcstudio.db-shm",
               data / "studio.key", run_a / "delta.safetensors", run_a / "config.yaml",
               run_a / "source.mp4", run_a / "clip-latents.safetensors", run_a / "meta.json",
               *[p for p in (data / "sessions" / owner_a / "uploads").rglob("*") if p.is_file()],
               *[p for p in data.glob("calibration*") if p.is_file()]]
    assert all(t.exists() for t in targets[:2]) and (run_a / "delta.safetensors").is_file()
    leaked = [u for t in targets if t.exists() for u in file_routes(url, t) if fetched(u)]
    assert not leaked, leaked

    # A runs a longer tune; B, holding A's public id and the job id, cannot stop it
    job = a.submit(session=sid_a, clip=handle_file(str(CLIP)), prompt="a red circle",
                   frames=4, width=64, height=64, steps=100, api_name="/tune")
    deadline = time.time() + 120
    job_a = None
    while time.time() < deadline and job_a is None:
        running = [j for j in studio.store.jobs(session_id=owner_a)
                   if j.kind == "tune" and j.status == "running"]
        job_a = running[0].id if running else None
        time.sleep(0.2)
    assert job_a, "A's second tune never started"
    for session in (owner_a, ""):
        try:
            b.predict(session=session, job_id=job_a, api_name="/stop")
        except Exception as e:
            assert "another visitor" in str(e)
    time.sleep(0.5)
    assert studio.store.job(job_a).status == "running" and not studio._handle(job_a).cancel.cancelled
    assert a.predict(session=sid_a, job_id=job_a, api_name="/stop").startswith("Stopping")
    job.result()
    assert studio.store.job(job_a).status == "stopped"

    # ... nor resume, edit, push, extend or compare A's work, with A's public id or their own
    edits = sorted((run_a / "edits").iterdir())
    refused = []
    for session in (owner_a, b.predict(session="", clip=handle_file(str(CLIP)),
                                       api_name="/clip_size")[0]):
        for api, kw in (("/resume", dict(job_id=job_a)),
                        ("/edit", dict(run_dir=str(run_a), prompt="a blue square", steps=5)),
                        ("/push", dict(run_dir=str(run_a), repo_id="b/stolen", token="x")),
                        ("/long", dict(run_dir=str(run_a), prompts="a\nb", frames=8)),
                        ("/control_preview", dict(run_dir=str(run_a))),
                        ("/compare", dict(clip=None, methods=[], runs=[str(run_a)],
                                          edit_prompt="a blue square"))):
            try:
                out = b.predict(session=session, api_name=api, **kw)
            except Exception as e:
                refused.append((api, str(e)))
                continue
            pytest.fail(f"{api} with session {session[:6]}... answered {out!r:.200}")
    odd = [(api, m) for api, m in refused
           if not any(k in m for k in ("another visitor", "outside", "session"))]
    assert len(refused) == 12 and not odd, odd
    assert studio.store.job(job_a).resumed_by is None
    assert sorted((run_a / "edits").iterdir()) == edits  # B's edit never ran on A's run


def test_a_desktop_studio_serves_its_data_folder_to_its_one_user(tiny_sd, tmp_path):
    """The desktop keeps today's convenience: its data folder is served (its one user's runs)
    and every tab of it shares the runs; nothing of that holds on a public studio."""
    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui import served_paths

    desk = make_studio(tmp_path / "d", public=False)
    pub = make_studio(tmp_path / "p", public=True)
    try:
        assert served_paths(desk) == [str((tmp_path / "d").resolve())]
        assert served_paths(pub) == []
        a, b = desk.new_session(), desk.new_session()
        run = a.outputs / "tune-x"
        run.mkdir(parents=True)
        assert desk.safe_path(b.id, str(run)) == run.resolve()  # any tab, any run
        pa, pb = pub.new_session(), pub.new_session()
        prun = pa.outputs / "tune-x"
        prun.mkdir(parents=True)
        with pytest.raises(Exception, match="outside"):
            pub.safe_path(pb.id, str(prun))
        with pytest.raises(Exception, match="not valid|expired"):
            pub.session(pa.owner)  # the public id opens nothing
    finally:
        desk.close()
        pub.close()
