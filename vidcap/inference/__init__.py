"""Running the captioner's front end over many videos: decoding overlapped with the models (`pipeline`), the front end on
an inference backend (`front_end_backend`: onnxruntime, int8), and its saliency maps drawn over the frames (`overlay`)."""
