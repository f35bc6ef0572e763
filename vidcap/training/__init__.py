"""Training captioners: the feature cache of the frozen front end's tokens (`feature_cache`), cross-entropy training on it
(`train`) and the self-critical stage after it (`scst`)."""
