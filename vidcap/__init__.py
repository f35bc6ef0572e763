"""Video captioning with saliency-weighted encoder features (uses the `saliency` package's models)."""
