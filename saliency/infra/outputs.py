"""Where the commands write, checked before any work: output names follow the inputs' paths (a folder's files by
their path inside it, so two `photo.jpg` of its subfolders keep apart), an output that would overwrite an input or
that two inputs would both write is a one-line error, and every file the tools write is marked (`OUTPUT_MARK` in its
metadata) so that a later run over the same folder does not take it as an input."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from saliency.infra.errors import UserError
from saliency.infra.media import IMAGE_SUFFIXES, OUTPUT_MARK, VIDEO_SUFFIXES


def check_outputs(planned: dict[Path, Iterable[Path]], inputs: Iterable[Path] = ()) -> None:
    """A one-line UserError before any work when an output of `planned` ({input: the files it will write}) is one of
    the inputs (or of `inputs`, the other files the command reads), or when two inputs would write the same file."""
    reading = {os.path.realpath(path) for path in [*planned, *inputs]}
    writer: dict[str, Path] = {}
    for source, outputs in planned.items():
        for output in outputs:
            real = os.path.realpath(output)
            if real in reading:
                raise UserError(f"{output}: an input; writing there would destroy it (choose another --out)")
            if real in writer and writer[real] != source:
                raise UserError(f"{writer[real]} and {source} would both write {output}; give them in separate runs "
                                "or rename one")
            writer[real] = source


def is_own_output(path: Path) -> bool:
    """Whether `path` is a map, overlay or video the tools wrote (its metadata carries `OUTPUT_MARK`); a file that
    cannot be read says no (reading it later reports why)."""
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as image:
                comment = image.info.get("comment") or image.info.get("Comment") or ""
            return (comment.decode(errors="replace") if isinstance(comment, bytes) else str(comment)) == OUTPUT_MARK
        if suffix in VIDEO_SUFFIXES:
            from saliency.infra.media import probe

            return probe(path).comment == OUTPUT_MARK
    except (OSError, ValueError, UserError):
        return False
    return False


def media_in_folder(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """The files under `folder` (recursively, sorted) with one of `suffixes`, less hidden ones (a dot first, as the
    partial files of an interrupted write are named) and those the tools wrote."""
    return [path for path in sorted(folder.rglob("*"))
            if path.suffix.lower() in suffixes and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts) and not is_own_output(path)]


def named_inputs(inputs: Sequence[str], suffixes: Sequence[str]) -> list[tuple[Path, Path]]:
    """(file, the name its outputs take): a file as given, named by its stem; a folder expanded to the files with
    `suffixes` inside it (`media_in_folder`), each named by its path inside the folder without its suffix; a folder
    without any stays as it is, to be reported and skipped like a bad file."""
    named: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text)
        found = media_in_folder(path, suffixes) if path.is_dir() else []
        named.extend((file, file.relative_to(path).with_suffix("")) for file in found)
        if not found:
            named.append((path, Path(path.stem)))
    return named
