"""Tuning commands: ``lr-find`` (Lightning's learning-rate range test on a config's own optimizer)."""
