"""The top-level package exports a small API, resolved lazily."""

import pytest

import spade_lens


def test_every_exported_name_resolves():
    for name in spade_lens.__all__:
        assert getattr(spade_lens, name) is not None, name
    assert set(spade_lens.__all__) == set(spade_lens._EXPORTS) | {"SpadeLensError"}


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        spade_lens.nope  # noqa: B018


def test_project_errors_are_value_errors():
    from hooks import HooksError
    from pcfg import PCFGError
    from spade_lens.errors import USER_ERRORS

    for err in (spade_lens.SpadeLensError, PCFGError, HooksError):
        assert issubclass(err, ValueError) and err in USER_ERRORS
