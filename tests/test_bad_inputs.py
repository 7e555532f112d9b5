"""The bad-input audit (cases in ``_bad_inputs.py``): one line naming the argument or file, exit code 2, no
traceback, no silent wrong answer, and no user file changed or deleted, for every subcommand and the API."""

from __future__ import annotations

import pytest
from _bad_inputs import CASES, World, attempt
from _threads import torch_threads


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with torch_threads(1):
        return World(tmp_path_factory.mktemp("bad_inputs"))


def test_the_audit_covers_every_subcommand_and_the_api():
    from spade_lens.cli import COMMAND_MODULES

    covered = {case.given.split()[0].replace("-", "_") for case in CASES}
    assert set(COMMAND_MODULES) <= covered
    assert sum(case.name.startswith("api-") for case in CASES) >= 10 and len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(world, case):
    with torch_threads(1):
        got = attempt(case, world)
    assert got.code != "traceback", got.message
    assert got.code == case.code, got.message
    assert case.expect in got.message, got.message
    if case.code == 2 and not case.name.startswith("api-"):
        assert got.lines == 1, got.message  # one line on stderr
    assert got.changed == []  # nothing of the user's was changed or deleted
