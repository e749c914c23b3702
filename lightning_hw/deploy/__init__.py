"""What leaves the project: predictions on new files (:mod:`.predict`) and the ONNX export (:mod:`.export`)."""
