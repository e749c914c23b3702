"""Datamodules: one module per dataset family, on the bases in :mod:`lightning_hw.data.base`."""
