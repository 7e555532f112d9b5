"""The project's exception type.

Every bad input that reaches spade-lens is reported as a :class:`SpadeLensError` whose message names the
argument, what was received and what was expected. The ``pcfg`` and ``hooks`` packages, which must not import
``spade_lens``, define their own ``ValueError`` subclasses (:class:`pcfg.PCFGError`, :class:`hooks.HooksError`);
:data:`USER_ERRORS` groups all three so a caller (the CLI) can catch them together.
"""

from __future__ import annotations

from hooks.errors import HooksError
from pcfg.errors import PCFGError


class SpadeLensError(ValueError):
    """Bad input or state detected by spade-lens itself (model, SAEs, training, probing)."""


USER_ERRORS: tuple[type[ValueError], ...] = (SpadeLensError, PCFGError, HooksError)
