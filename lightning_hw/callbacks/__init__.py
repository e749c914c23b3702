"""Lightning callbacks: fine-tuning, the frozen-feature cache, plots, resume and guards the CLI adds to runs."""
