"""The captioner as a model: the frame encoder, saliency weighting (one strategy per mode), the saliency sources, the
caption decoder and tokenizer, and the composed `Captioner`."""
