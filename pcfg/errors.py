"""The pcfg package's exception type (mirrors ``spade_lens.SpadeLensError`` without importing it)."""


class PCFGError(ValueError):
    """A bad grammar, corpus or token sequence; the message names the offending rule, symbol or argument."""
