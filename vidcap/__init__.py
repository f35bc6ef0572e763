"""Video captioning with saliency-weighted features: `vidcap.load(run_dir)` opens a trained captioner and
`vidcap.save(captioner, out)` writes one (re-exported lazily from `vidcap.run`, so importing the package
stays cheap); `vidcap.evaluation.score(gts, res)` gives the caption metrics.

Rooms: `model/` (encoder, weighting, saliency sources, decoder, tokenizer, captioner), `data/` (frames, datasets,
feature cache), `training/`, `evaluation/`, `app/` (what the commands run) and `demo.py`; `cli.py` parses and calls.
"""

__all__ = ["load", "save"]


def __getattr__(name: str):
    if name in __all__:
        from vidcap import run

        return getattr(run, name)
    raise AttributeError(f"module 'vidcap' has no attribute {name!r}")
