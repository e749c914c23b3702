"""``python -m lightning_hw``: dispatch to :func:`lightning_hw.cli.entry.main` (quick answers without Lightning)."""

from lightning_hw.cli.entry import main

if __name__ == "__main__":
    main()
