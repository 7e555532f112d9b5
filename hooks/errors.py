"""The hooks package's exception type (mirrors ``spade_lens.SpadeLensError`` without importing it)."""


class HooksError(ValueError):
    """Bad input to activation capture, buffering or caching; the message names the argument and value."""


def check_int(name: str, value: object, minimum: int = 1) -> None:
    """HooksError naming ``name`` unless ``value`` is an int (not a bool) >= ``minimum`` (1 or 0)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise HooksError(f"{name}: expected {kind}, got {value!r}")
