"""Tasks: LightningModules that define what is learned (loss, metrics, how outputs are read)."""
