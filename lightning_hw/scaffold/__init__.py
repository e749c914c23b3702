"""``python -m lightning_hw new-plugin``: a plugin package to start from (:mod:`.new_plugin`, :mod:`.templates`)."""
