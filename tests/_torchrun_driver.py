"""Run ``spade-lens`` commands one after another in one process: ``torchrun ... _torchrun_driver.py CMD1 -- CMD2``.

The commands run unchanged; each joins the torchrun process group (the first one creates it)."""

from __future__ import annotations

import sys

import torch

from spade_lens.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    argv, commands = sys.argv[1:], [[]]
    for arg in argv:
        if arg == "--":
            commands.append([])
        else:
            commands[-1].append(arg)
    sys.exit(max(main(command) for command in commands))
