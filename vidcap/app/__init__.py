"""Using a trained captioner: folders into a resumable JSON-lines file (`batch`), long videos by segment (`segments`),
output formats (`formats`) and the local web page and API (`serve`)."""
