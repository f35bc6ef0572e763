"""Training captioners: the run config with `load` and `save` (`run`), cross-entropy training on cached features
(`train`) and the self-critical stage after it (`scst`)."""
