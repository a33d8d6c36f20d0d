"""FHIR R4 literal references resolved within one message: ``#id`` to a contained resource,
a Bundle entry's ``fullUrl``, or the ``Type/id`` tail of a relative or absolute reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.adapters.fhir.resources import Resource

__all__ = ["TYPE_ID", "Located", "Scope", "contained_scope", "lookup"]

# The "Type/id" tail of a literal reference (relative or absolute, optionally versioned).
TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9.\-]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True, slots=True)
class Located:
    resource: Resource
    where: str  # position in the message, e.g. "entry[3].resource"
    contained: bool  # a contained resource: its id means nothing outside the message


Scope = Mapping[str, Located]


def contained_scope(resource: Resource, where: str, outer: Scope) -> dict[str, Located]:
    scope = dict(outer)
    for j, inner in enumerate(resource.contained):
        if inner.id:
            scope[inner.id] = Located(inner, f"{where}.contained[{j}]", contained=True)
    return scope


def lookup(reference: str, scope: Scope, index: Mapping[str, Located]) -> Located | None:
    if reference.startswith("#"):
        return scope.get(reference[1:])
    found = index.get(reference)
    if found is None and (tail := TYPE_ID.search(reference)):
        found = index.get(f"{tail[1]}/{tail[2]}")
    return found
