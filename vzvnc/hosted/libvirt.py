"""placeholder until written"""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pass


def command(args: argparse.Namespace) -> int:
    return 0
