"""Landmark datasets: the base (:mod:`.base`: images plus points, augmented together) and one module per set."""
