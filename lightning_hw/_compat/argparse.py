"""argparse internals lightning-hw relies on (checked by tests/test_compat.py)."""

from __future__ import annotations

import argparse


def parser_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of a parser (jsonargparse's too), to suggest the option a user meant.

    argparse has no public list of a parser's options; ``_actions`` has been the same since
    Python 3.2 and jsonargparse builds on it.
    """
    return list(getattr(parser, "_actions", []))
