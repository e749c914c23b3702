"""Every use of another library's private API, one module per library.

A private attribute or method can change in any release. Each one lightning-hw relies
on is reached only through a function or class here, with a comment saying what it
is for, and ``tests/test_compat.py`` checks each against the installed version: when a
library changes, a test named after the attribute fails with the library's version in
its message, instead of a run failing in the middle. ``pyproject.toml`` caps these
libraries below their next minor release for the same reason.

- :mod:`.lightning`: checkpoint callback hooks, the CLI's checkpoint and subcommand hooks,
  the epoch loop's running sums, loader states, WandbLogger's settings, the hook-name attribute.
- :mod:`.torch`: a module's direct children without hashing them; the message of an error raised in a DataLoader worker.
- :mod:`.torchmetrics`: a metric's update count after restoring its states.
- :mod:`.argparse`: the options a (jsonargparse) parser accepts.
- :mod:`.python`: the interpreter's shutdown of its threads and its ``atexit`` functions, run before a warm fork's ``os._exit``.
"""
