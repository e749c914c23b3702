"""Lightning callbacks of lightning-hw (progress bar defaults, speed-ups, compilation, ...)."""
