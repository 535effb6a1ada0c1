"""The app as the README starts it (`python app.py`), with the data folder in its default place:
the platform user-data dir under HOME, outside both the temp dir and the working dir. Gradio
serves nothing from there unless the app names it in ``allowed_paths``; a test that only ever
ran with VCSTUDIO_DATA in the temp dir hid exactly that."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_process import app_py as start_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_app(tmp_path_factory):
    with start_app(tmp_path_factory.mktemp("default-app")) as app:
        yield app


def test_files_from_the_default_data_folder_are_served(default_app, clip8, tmp_path):
    from gradio_client import Client, handle_file

    from vcstudio.io import read_video, write_mp4

    clip = write_mp4(clip8[:4], tmp_path / "clip.mp4")
    c = Client(default_app["url"], verbose=False, download_files=str(tmp_path / "dl"))
    sid, job, status, loss, preview, run_dir = c.predict(
        clip=handle_file(str(clip)), prompt="a red circle", frames=4, stride=1, width=64,
        height=64, steps=10, lr=1e-3, api_name="/tune")
    data = default_app["home"] / ".local" / "share" / "vcstudio"
    assert Path(run_dir).resolve().is_relative_to(data.resolve())
    video, gif, estatus, plot, table = c.predict(session=sid, run_dir=run_dir,
                                                 prompt="a blue square", steps=5, guidance=5.0,
                                                 api_name="/edit")
    path = Path(video["video"] if isinstance(video, dict) else video)
    assert path.is_relative_to(tmp_path / "dl")  # downloaded through the app's file route
    frames = read_video(path)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (64, 64)
    assert "InvalidPathError" not in default_app["log"].read_text()


def _readme_client_script() -> str:
    import re

    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "gradio_client" in b]
    assert len(blocks) == 1, "README has one gradio_client script"
    assert 'Client("http://127.0.0.1:7860/"' in blocks[0]
    return blocks[0]


def test_readme_client_script_tunes_edits_and_downloads(default_app, tmp_path):
    """The README's gradio_client script, as a user runs it (from the repository, against
    `python app.py`), only the port changed: it tunes and edits with the named API and gets
    the edited video through gradio_client's download, in well under 10 minutes."""
    from vcstudio.io import read_video

    script = _readme_client_script().replace("http://127.0.0.1:7860/", default_app["url"])
    script = script.replace('download_files="downloads"',
                            f'download_files={str(tmp_path / "downloads")!r}')
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    took = time.time() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("Done. ")
    video = Path(last.split(" ", 1)[1])
    assert video.is_relative_to(tmp_path / "downloads")
    frames = read_video(video)
    assert frames.shape[0] == 8 and frames.shape[2] > 0
    print(f"README script: {took:.0f} s")
    assert took < 600
