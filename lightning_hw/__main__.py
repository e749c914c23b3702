"""``python -m lightning_hw``: dispatch to :func:`lightning_hw.cli.main`."""

from lightning_hw.cli import main

if __name__ == "__main__":
    main()
