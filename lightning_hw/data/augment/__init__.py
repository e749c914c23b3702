"""Batch augmentation on the device: images (:mod:`.images`) and images with their landmarks (:mod:`.landmarks`)."""
