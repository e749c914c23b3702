"""Lightning callbacks: fine-tuning schedules, the frozen-feature cache, plots."""
