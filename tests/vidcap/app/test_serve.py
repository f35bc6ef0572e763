"""`vidcap serve`: the page, `POST /api/caption` with its limits and errors, the overlay video, the bounded queue,
and (where a `chromium` binary is installed) the page as a browser draws it."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from saliency.infra.rundir import RunDir
from saliency.models import build
from saliency.run import ModelSpec, SaliencyRunConfig
from vidcap.model.captioner import with_saliency
from vidcap.cli import build_parser, main
from vidcap.data.video import probe
from vidcap.run import VidcapRunConfig, load_run
from vidcap.app.serve import create_app, listen

pytestmark = pytest.mark.usefixtures("one_thread")

STUDENT = {"width": 8, "depth": 1, "decoder_width": 8}


@pytest.fixture(scope="module")
def captioner_with_saliency(tiny_captioner, tmp_path_factory) -> Path:
    """The tiny captioner given an untrained tiny saliency student (residual weighting, no weights of its own), saved
    again as a run of its own: a captioner whose saliency overlay can be drawn."""
    root = tmp_path_factory.mktemp("serve")
    student = RunDir(root / "student")
    student.save_config(SaliencyRunConfig(model=ModelSpec("student", dict(STUDENT))))
    torch.manual_seed(0)
    student.save_weights(build("student", **STUDENT).state_dict())
    run = RunDir(root / "captioner")
    shutil.copytree(tiny_captioner / "captioner", run.path)
    config = run.load_config(VidcapRunConfig)
    config = replace(config, captioner=with_saliency(config.captioner, "student", str(student.path), "residual"))
    weights = run.load_weights()
    run.save_config(config)
    run.save_weights(weights)
    return run.path


@pytest.fixture(scope="module")
def model(captioner_with_saliency):
    return load_run(captioner_with_saliency)[0]


@pytest.fixture
def client(model, tmp_path):
    with TestClient(create_app(model, "tiny", tmp_path / "work", max_upload_mb=1, queue=2)) as client:
        yield client


@pytest.fixture(scope="module")
def clip(tiny_captioner) -> Path:
    return next((tiny_captioner / "vidcap-data" / "TrainValVideo").glob("*.mp4"))


def upload(client, path_or_bytes, name="clip.mp4", **fields):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return client.post("/api/caption", files={"video": (name, data, "video/mp4")}, data=fields)


class PageParser(HTMLParser):
    """Every element's tag and attributes, and the text of the <script>."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.script, self._in_script = "", False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.script += data

    def by_id(self, name: str) -> tuple[str, dict]:
        (element,) = [(tag, attrs) for tag, attrs in self.elements if attrs.get("id") == name]
        return element


def test_the_page_has_an_upload_form_the_overlay_player_and_the_result_tables(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = PageParser()
    page.feed(response.text)
    assert page.by_id("video") == ("input", {"id": "video", "type": "file", "name": "video", "accept": "video/*"})
    assert page.by_id("segments")[1]["name"] == "segments"
    assert page.by_id("overlay")[0] == "video" and "autoplay" in page.by_id("overlay")[1]
    assert page.by_id("segments-table")[0] == page.by_id("timings")[0] == "table"
    assert all(part in page.script for part in ('fetch("/api/caption"', 'fetch("/api/health")', '"drop"'))


def test_health_names_the_model_and_the_limits(client):
    assert client.get("/api/health").json() == {"status": "ok", "model": "tiny", "saliency": True, "pending": 0,
                                                "queue": 2, "max_upload_mb": 1}


def test_a_video_gets_its_caption_and_trust_first_and_no_overlay_unless_asked(client, model, clip):
    answer = upload(client, clip).json()
    expected = model.caption_files([clip])[0]
    assert answer["caption"] == expected and answer["segments"] == [] and answer["overlay"] is None
    assert answer["confidence"] == round(expected.confidence, 4) and answer["in_domain"] == expected.in_domain
    assert "overlay" not in answer["timings"]


def test_the_page_has_a_box_for_the_overlay_off_by_default(client):
    page = PageParser()
    page.feed(client.get("/").text)
    tag, attributes = page.by_id("draw-overlay")
    assert (tag, attributes["type"], attributes["name"]) == ("input", "checkbox", "overlay")
    assert "checked" not in attributes and 'body.append("overlay"' in page.script


def test_a_video_gets_its_caption_the_time_of_each_stage_and_its_overlay_video(client, model, clip, tmp_path):
    response = upload(client, clip, overlay="1")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["caption"] == model.caption_files([clip])[0] and answer["segments"] == []
    assert {"upload", "decode", "saliency", "encoder", "decoder", "overlay", "total"} <= set(answer["timings"])
    overlay = client.get(answer["overlay"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4"
    played = tmp_path / "overlay.mp4"
    played.write_bytes(overlay.content)
    assert probe(played).n_frames == probe(clip).n_frames


def test_segments_come_back_with_start_end_and_caption(client, clip):
    answer = upload(client, clip, segments="0.25").json()
    assert answer["caption"] is None
    starts = [segment["start"] for segment in answer["segments"]]
    ends = [segment["end"] for segment in answer["segments"]]
    assert starts[0] == 0 and starts[1:] == ends[:-1] and ends[-1] == pytest.approx(probe(clip).duration, abs=0.01)
    assert all(isinstance(segment["caption"], str) for segment in answer["segments"])


def test_the_upload_is_deleted_after_its_answer(client, clip, tmp_path):
    assert upload(client, clip).status_code == 200
    assert upload(client, b"not a video").status_code == 422
    assert list((tmp_path / "work" / "uploads").iterdir()) == []


BAD_UPLOADS = {  # what the upload is → the start of the error the API answers with, by status
    "empty": (b"", 422, "clip.mp4: empty file (0 bytes)"),
    "random bytes": (np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes(), 422,
                     "clip.mp4: not a readable video ("),
    "twice the size limit": (b"\0" * 2 * 2**20, 413, "upload larger than the server's limit of 1 MB"),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_a_bad_upload_gets_a_4xx_json_error_and_the_server_keeps_serving(client, clip, name):
    data, status, message = BAD_UPLOADS[name]
    response = upload(client, data)
    assert response.status_code == status and response.json()["error"].startswith(message)
    assert upload(client, clip).status_code == 200


def test_a_truncated_mp4_gets_422_naming_the_upload(client, clip):
    data = clip.read_bytes()
    response = upload(client, data[: len(data) // 2], name="cut.mp4")
    assert response.status_code == 422 and response.json()["error"].startswith("cut.mp4: not a readable video (")


def test_an_oversized_body_without_a_length_is_stopped_at_the_limit(client):
    """A chunked upload has no Content-Length: the limit is applied as the bytes arrive."""
    def chunks():
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n\r\n"
        yield boundary
        for _ in range(3):
            yield b"\0" * 2**20
        yield b"\r\n--x--\r\n"

    response = client.post("/api/caption", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "limit of 1 MB" in response.json()["error"]


@pytest.mark.parametrize("fields, status, message", [
    ({"segments": "0"}, 400, "segments 0: a segment must last a positive"),
    ({"segments": "often"}, 400, "segments often: expected seconds per segment"),
])
def test_bad_segments_get_400(client, clip, fields, status, message):
    response = upload(client, clip, **fields)
    assert response.status_code == status and response.json()["error"].startswith(message)


def test_a_form_without_the_video_field_gets_400(client):
    response = client.post("/api/caption", files={"file": ("clip.mp4", b"data", "video/mp4")})
    assert response.status_code == 400 and "field 'video'" in response.json()["error"]


def test_an_unknown_overlay_is_404(client):
    assert client.get("/overlays/0123456789abcdef0123456789abcdef.mp4").status_code == 404
    assert client.get("/overlays/..%2Fuploads").status_code == 404


def test_requests_beyond_the_queue_get_503_at_once_and_the_queued_ones_are_answered(model, clip, tmp_path, monkeypatch):
    """Queue of 2: while the first is being captioned (held here) and the second waits, every further request gets
    503 straight away; once the first is let go both are answered 200 and the server is healthy."""
    app = create_app(model, "tiny", tmp_path / "work", max_upload_mb=1, queue=2)
    release, started = threading.Event(), threading.Event()
    from vidcap.app import serve as serve_module

    caption_video = serve_module.caption_video

    def held(*args, **kwargs):
        started.set()
        assert release.wait(timeout=120)
        return caption_video(*args, **kwargs)

    monkeypatch.setattr(serve_module, "caption_video", held)
    with TestClient(app) as client:
        answers: list[int] = []
        first = threading.Thread(target=lambda: answers.append(upload(client, clip).status_code))
        first.start()
        assert started.wait(timeout=120)
        second = threading.Thread(target=lambda: answers.append(upload(client, clip).status_code))
        second.start()
        deadline = time.monotonic() + 120  # bounded, and failing at once if the second request ends instead
        while client.get("/api/health").json()["pending"] < 2:
            assert second.is_alive() and time.monotonic() < deadline, f"the second request never queued: {answers}"
            second.join(timeout=0.05)
        turned_away = [upload(client, clip) for _ in range(5)]
        assert [r.status_code for r in turned_away] == [503] * 5 and "busy" in turned_away[0].json()["error"]
        release.set()
        first.join(timeout=120)
        second.join(timeout=120)
        assert answers == [200, 200]
        assert client.get("/api/health").json()["pending"] == 0


# --------------------------------------------------------------------------------------------------
# the command


def test_serve_binds_to_localhost_by_default_and_takes_its_limits():
    args = build_parser().parse_args(["serve", "--model", "runs/cap"])
    assert (args.host, args.port, args.max_upload_mb, args.queue) == ("127.0.0.1", 8000, 200, 4)


@pytest.mark.parametrize("flag, value", [("--max-upload-mb", "0"), ("--queue", "0")])
def test_limits_below_one_are_refused(capsys, flag, value):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--model", "runs/cap", flag, value])
    assert exited.value.code == 2 and f"'{value}': must be" in capsys.readouterr().err


def test_a_port_in_use_is_a_one_line_error_before_the_model_is_loaded(cli):
    taken = listen("127.0.0.1", 0)
    taken.listen()  # as a running server's is
    try:
        run = cli("vidcap")
        code, _, err = run("serve", "--model", "no-such-run", "--port", taken.getsockname()[1])
        assert code == 2
        run.assert_one_line_error(err, f"127.0.0.1:{taken.getsockname()[1]}: cannot listen there")
    finally:
        taken.close()


def test_the_command_serves_on_localhost_until_ctrl_c_and_leaves_no_temporary_files(captioner_with_saliency, tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "vidcap.cli", "serve", "--model", str(captioner_with_saliency),
                               "--port", "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        url = re.fullmatch(r"serving \S+ at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", server.stdout.readline()).group(1)
        assert httpx.get(f"{url}api/health", timeout=60).json()["status"] == "ok"
        assert [path.name.startswith("vidcap-serve-") for path in tmp_path.iterdir()] == [True]
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 130 and err == "vidcap: interrupted\n"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# the page in a browser


@pytest.fixture
def running_server(model, tmp_path):
    """The app served by uvicorn on a free local port in a thread, as `vidcap serve` serves it: its base URL."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(model, "tiny", tmp_path / "work"), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=60)
    sock.close()


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_the_page_draws_in_headless_chromium_and_shows_the_model_from_the_health_check(running_server, tmp_path):
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=5000", "--window-size=1200,900"]
    shot = tmp_path / "page.png"
    done = subprocess.run([*browser, f"--screenshot={shot}", running_server], capture_output=True, timeout=120)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (900, 1200, 3) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # drawn, not blank
    dom = subprocess.run([*browser, "--dump-dom", running_server], capture_output=True, text=True, timeout=120).stdout
    assert "model tiny · saliency on · uploads up to 200" in dom
