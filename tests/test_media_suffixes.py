"""Both packages take the same files as videos (and saliency the same as images): one list each, in
`saliency.infra.media`."""


def test_saliency_predict_and_vidcap_caption_take_the_same_videos_from_a_folder(tmp_path):
    from saliency.infra.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from saliency.infra.outputs import named_inputs
    from vidcap.app.batch import expand_videos

    for suffix in (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES, ".txt", ".srt"):
        (tmp_path / f"clip{suffix.replace('.', '_')}{suffix.upper()}").write_bytes(b"x")
    videos = sorted(str(p) for p in tmp_path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    assert len(videos) == len(VIDEO_SUFFIXES) == 12
    assert expand_videos([str(tmp_path)]) == videos
    found = [path for path, _ in named_inputs([str(tmp_path)], (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))]
    assert [str(p) for p in found if p.suffix.lower() in VIDEO_SUFFIXES] == videos
    assert len(found) == len(VIDEO_SUFFIXES) + len(IMAGE_SUFFIXES)
