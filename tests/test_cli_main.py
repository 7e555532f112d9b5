"""The command-line entry point: subcommands are registered and errors become one line and exit code 2."""

import pytest

from spade_lens.cli import COMMAND_MODULES, build_parser, main


def test_every_subcommand_module_registers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = set(sub.choices)
    assert {m.replace("_", "-") for m in COMMAND_MODULES} <= registered


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
