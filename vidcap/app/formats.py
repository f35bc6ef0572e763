"""`vidcap caption --format`: captions as text, JSON, JSON lines, SRT or WebVTT subtitles."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch to import for the parser's choices
    from vidcap.app.segments import Segment, VideoCaption

FORMATS = ("text", "json", "jsonl", "srt", "vtt")
SUBTITLES = ("srt", "vtt")
EMPTY_CUE = "[no caption]"  # a cue needs text: a blank line would end it
FLAG = "? "  # before a caption of a video unlike the model's training videos, in text and subtitles


def shown(caption: str | None) -> str:
    """A caption as text shows it: `FLAG` first when its video is unlike the training videos (`Caption.flagged`)."""
    return (FLAG if getattr(caption, "flagged", False) else "") + (caption or "")


def flagged(result: VideoCaption) -> bool:
    """Whether the caption, or a segment's, comes from a video unlike the model's training videos."""
    return any(getattr(caption, "flagged", False) for caption in [result.caption, *(s.caption for s in result.segments)])


def flag_note(about: dict | None) -> str:
    """What the flag means, said once on stderr: the model knows only the videos it was trained on."""
    world = (about or {}).get("synthetic_world")
    trained = (f"the synthetic world (coloured shapes; {about['train_videos']} videos of {about['data']})" if world
               else f"{about['train_videos']} videos of {about['data']}" if about else "its training videos")
    return (f"{FLAG.strip()} marks a caption of a video unlike those the model was trained on, {trained}: it says what "
            "the model knows, not what the video shows; do not trust it")


def record(video: str, result: VideoCaption) -> dict:
    """`{"video", "caption", "confidence", "in_domain"}`, or `{"video", "segments": [{"start", "end", "caption",
    "confidence", "in_domain"}]}` when captioned by segment."""
    return {"video": video, **result.as_fields()}


def jsonl_line(video: str, result: VideoCaption) -> str:
    return json.dumps(record(video, result), ensure_ascii=False)


def text_lines(video: str, result: VideoCaption, name_it: bool) -> list[str]:
    """`caption`, or one `START --> END<TAB>caption` line per segment; `VIDEO<TAB>` first when `name_it`."""
    prefix = f"{video}\t" if name_it else ""
    if result.caption is not None:
        return [prefix + shown(result.caption)]
    return [f"{prefix}{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\t{shown(s.caption)}" for s in result.segments]


def timestamp(seconds: float, decimal: str) -> str:
    """`HH:MM:SS,mmm` (SRT: `decimal` ','), `HH:MM:SS.mmm` (WebVTT: '.')."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"


def _cue_text(caption: str | None) -> str:
    return " ".join(shown(caption).split()) or EMPTY_CUE  # one line, never blank


def srt(segments: list[Segment]) -> str:
    """SubRip: numbered cues `N`, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the caption, a blank line."""
    return "".join(f"{number}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{_cue_text(s.caption)}\n\n"
                   for number, s in enumerate(segments, 1))


def vtt(segments: list[Segment]) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` and the caption."""
    cues = "".join(f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{_cue_text(s.caption)}\n\n" for s in segments)
    return f"WEBVTT\n\n{cues}"
