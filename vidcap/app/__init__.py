"""Using a trained captioner: many videos overlapped (`pipeline`), long videos by segment (`segments`), folders into a
resumable JSON-lines file (`batch`), output formats, saliency overlays, the web page and API (`serve`), and the front
end on an inference backend (`front_end_backend`)."""
