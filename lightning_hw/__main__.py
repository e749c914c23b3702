"""``python -m lightning_hw``: dispatch to :func:`lightning_hw.entry.main` (quick answers without Lightning)."""

from lightning_hw.entry import main

if __name__ == "__main__":
    main()
