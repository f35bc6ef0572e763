"""The report document renders the same content to Markdown and to self-contained HTML."""
import io

from PIL import Image

from vidcap.evaluation.reports.document import BulletList, Figure, Heading, Paragraph, Table, to_html, to_markdown, write_report


def png(colour=(200, 30, 30), size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


BLOCKS = [Paragraph("a <b> & c"), Heading("Scores"), Table(["run", "CIDEr"], [["none", "12.30"], ["stu|dent", "45.60"]]),
          BulletList(["first", "second"]), Figure("figs/chart.png", png(), "a chart")]


def test_html_is_self_contained_and_escaped(parse_report, decode_image):
    page = to_html("Title <x>", BLOCKS)
    parsed = parse_report(page)
    assert parsed.headings == ["Title <x>", "Scores"]
    assert parsed.tables == [[["run", "CIDEr"], ["none", "12.30"], ["stu|dent", "45.60"]]]
    assert all(link.startswith("data:") for link in parsed.links)  # nothing to fetch
    assert decode_image(parsed.images[0]).size == (8, 6)
    assert "a &lt;b&gt; &amp; c" in page


def test_markdown_has_the_same_table_and_references_the_figure_file():
    text = to_markdown("Title", BLOCKS)
    assert "| run | CIDEr |\n| --- | ---: |\n| none | 12.30 |\n| stu\\|dent | 45.60 |" in text
    assert "![a chart](figs/chart.png)" in text and "- first\n- second" in text


def test_write_report_puts_figures_beside_the_markdown(tmp_path):
    markdown, page = write_report(tmp_path / "out", "T", BLOCKS)
    assert markdown.name == "report.md" and page.name == "report.html"
    assert (tmp_path / "out" / "figs" / "chart.png").read_bytes() == BLOCKS[-1].data
