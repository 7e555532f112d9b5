"""The hooks package's exception type (mirrors ``spade_lens.SpadeLensError`` without importing it)."""


class HooksError(ValueError):
    """Bad input to activation capture, buffering or caching; the message names the argument and value."""
