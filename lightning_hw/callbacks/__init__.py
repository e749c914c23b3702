"""Lightning callbacks: fine-tuning, feature cache, plots, resume and guards, progress bar, compilation."""
