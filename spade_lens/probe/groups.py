"""Concept groups: several label classes probed as one concept (e.g. nouns and pronouns as one noun-phrase head).

``groups={"N+Pro": ["N", "Pro"]}`` counts every token of N or Pro as the concept ``N+Pro``; the other classes
stay as they are (the probe adds the members' counts: :meth:`~spade_lens.probe.counts.ProbeCounts.regrouped`). The merged concept takes the place of its first member in the concept order. This is how the
SpaDE paper's own evaluation counts nouns: pronoun tokens are added to the noun concept (five concepts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from spade_lens.errors import SpadeLensError


def parse_group(text: str) -> tuple[str, list[str]]:
    """``"NAME=A,B"`` (or ``"A,B"``, named ``"A+B"``) -> ``(NAME, [A, B])``; for ``--group`` on the command line."""
    name, sep, members = text.partition("=")
    if not sep:
        name, members = "", text
    parts = [m.strip() for m in members.split(",") if m.strip()]
    if len(parts) < 2:
        raise SpadeLensError(f"group: received {text!r}; expected NAME=A,B (at least two concepts, comma-separated)")
    return (name.strip() or "+".join(parts)), parts


def group_concepts(label_names: Sequence[str] | None,
                   groups: Mapping[str, Sequence[str]]) -> tuple[Tensor, list[str]]:
    """(lookup (len(label_names),) int64 old id -> new id, new concept names) for ``groups``."""
    if label_names is None:
        raise SpadeLensError("groups: need label_names to know which label ids the group members are; got None")
    names = list(label_names)
    owner: dict[str, str] = {}
    for group, members in groups.items():
        if isinstance(members, str) or len(members) < 2:
            raise SpadeLensError(f"groups[{group!r}]: received {members!r}; expected a list of at least two concepts")
        for member in members:
            if member not in names:
                raise SpadeLensError(f"groups[{group!r}]: {member!r} is not a concept; expected one of {names}")
            if member in owner:
                raise SpadeLensError(f"groups: {member!r} is in both {owner[member]!r} and {group!r}; expected one group")
            owner[member] = group
        if group in names and group not in members:
            raise SpadeLensError(f"groups: {group!r} is already a concept name; expected a new name for the group "
                                 "(or one of its own members)")
    new_names: list[str] = []
    lookup = []
    for name in names:
        target = owner.get(name, name)
        if target not in new_names:
            new_names.append(target)
        lookup.append(new_names.index(target))
    return torch.tensor(lookup, dtype=torch.int64), new_names

