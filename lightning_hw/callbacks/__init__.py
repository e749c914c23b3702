"""Lightning callbacks that the CLI adds to runs (and that configs may list under ``trainer.callbacks``)."""
