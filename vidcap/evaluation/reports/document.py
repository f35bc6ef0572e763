"""A report as a list of blocks, rendered once to Markdown (images as files beside it) and once to
self-contained HTML (images inlined as data URIs), so both always say the same thing."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from saliency.infra.rundir import atomic_write_bytes, atomic_write_text


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric_from: int = 1  # columns from this index on hold numbers: right-aligned


@dataclass
class Figure:
    name: str  # file name beside report.md, e.g. "thumbs/video7.jpg"
    data: bytes  # encoded PNG or JPEG
    caption: str = ""


Block = Union[Heading, Paragraph, BulletList, Table, Figure]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1d232a; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #dde2e8; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { padding: .3em .8em; border-bottom: 1px solid #e4e8ec; }
th { background: #f3f5f7; text-align: left; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #dde2e8; }
figcaption { color: #55606b; font-size: .9em; } ul { margin-top: .2em; }
"""


def _markdown_table(table: Table) -> str:
    rule = ["---:" if i >= table.numeric_from else "---" for i in range(len(table.headers))]
    lines = [table.headers, rule, *table.rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)


def to_markdown(title: str, blocks: list[Block]) -> str:
    """Markdown text; `Figure`s are referenced by their `name` (write them with `write_report`)."""
    parts = [f"# {title}"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, BulletList):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_markdown_table(block))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption or block.name}]({block.name})" + (f"\n\n*{block.caption}*" if block.caption else ""))
    return "\n\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    def cells(tag: str, line: list[str]) -> str:
        return "".join(f'<{tag}{" class=num" if i >= table.numeric_from else ""}>{html.escape(cell)}</{tag}>'
                       for i, cell in enumerate(line))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in table.rows)
    return f"<table><thead><tr>{cells('th', table.headers)}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(name: str, data: bytes) -> str:
    """`data:` URI of an encoded image, the MIME type taken from `name`'s suffix."""
    return f"data:{_MIME[Path(name).suffix.lower()]};base64,{base64.b64encode(data).decode('ascii')}"


def to_html(title: str, blocks: list[Block]) -> str:
    """One HTML page with its style and images inside: it can be mailed or opened offline."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, BulletList):
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        elif isinstance(block, Figure):
            caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
            parts.append(f'<figure><img src="{data_uri(block.name, block.data)}" alt="{html.escape(block.caption or block.name)}">'
                         f"{caption}</figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(folder: str | Path, title: str, blocks: list[Block], stem: str = "report") -> tuple[Path, Path]:
    """`folder/<stem>.md` with its figures beside it, and the self-contained `folder/<stem>.html`."""
    folder = Path(folder)
    for block in blocks:
        if isinstance(block, Figure):
            atomic_write_bytes(folder / block.name, block.data)
    markdown, page = folder / f"{stem}.md", folder / f"{stem}.html"
    atomic_write_text(markdown, to_markdown(title, blocks))
    atomic_write_text(page, to_html(title, blocks))
    return markdown, page
