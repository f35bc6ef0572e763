"""Fixtures shared by the vidcap tests, and an HTML reader for the reports."""
from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser

import pytest
import torch
from PIL import Image


class MotionSpy(torch.nn.Module):
    """A motion saliency model that records its input `[N,6,H,W]` and answers a uniform log-density."""

    in_channels = 6

    def __init__(self, gap: int = 1):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.motion_gap = gap  # how many frames back it looks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return torch.full((len(x), 1, *x.shape[-2:]), -math.log(x.shape[-2] * x.shape[-1]))


@pytest.fixture
def motion_spy():
    """Makes `MotionSpy`s: motion saliency models that record what they are given."""
    return MotionSpy


@pytest.fixture(scope="session")
def tiny_captioner(tmp_path_factory):
    """A tiny captioner trained for one epoch by `vidcap train` on six synthetic clips, and its feature cache in two
    shards (train + val, then test): `ROOT/captioner`, `ROOT/cache`, `ROOT/vidcap-data`. Made once for the
    corruption tests, which damage copies (the battery restores what it damages)."""
    from tests.support import captioner_runs

    threads = torch.get_num_threads()  # the commands set one thread; the other tests keep theirs
    root = tmp_path_factory.mktemp("tiny-captioner")
    captioner_runs.make_captioner_run(root)
    torch.set_num_threads(threads)
    return root


class ReportParser(HTMLParser):
    """Collects tables (lists of rows of cell text), headings, <img> sources and every href/src."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.headings: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[key] for key in ("href", "src") if key in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h1", "h2", "h3"):
            self._heading = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag in ("h1", "h2", "h3"):
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        for part in (self._cell, self._heading):
            if part is not None:
                part.append(data)


def _parse(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser


def _decode(src: str) -> Image.Image:
    """The image inside a `data:image/...;base64,` URI (fails on anything else)."""
    header, payload = src.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64"), header
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


@pytest.fixture
def parse_report():
    """HTML text → ReportParser (tables, headings, images, links), read the way a browser would."""
    return _parse


@pytest.fixture
def decode_image():
    """A `data:image/...;base64,` URI → the decoded PIL image."""
    return _decode
