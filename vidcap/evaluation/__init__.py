"""Scoring captions: BLEU-1..4, METEOR, ROUGE-L and CIDEr by pycocoevalcap (`caption_metrics`; `score(gts, res)`,
re-exported lazily: the metrics' children run `python -m vidcap.evaluation.caption_metrics`), grounding against the
synthetic world's actor (`grounding`), `vidcap eval` of a whole split (`splits`) and the reports (`reports`)."""

__all__ = ["METRIC_KEYS", "cider", "score", "score_and_per_item"]


def __getattr__(name: str):
    if name in __all__:
        from vidcap.evaluation import caption_metrics

        return getattr(caption_metrics, name)
    raise AttributeError(f"module 'vidcap.evaluation' has no attribute {name!r}")
