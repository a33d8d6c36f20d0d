"""FHIR R4 JSON (Observation, DiagnosticReport, Bundle) to canonical CBC results.

- ``resources``: the elements read, as pydantic models, and loading a JSON message.
- ``references``: literal references resolved within the message (contained, ``fullUrl``).
- ``observation``: one Observation to one CBC component (``read_observation``).
- ``message``: Bundle and DiagnosticReport traversal, Observations of one specimen merged into
  one result (``parse_fhir``).
"""

from monitor.adapters.fhir.message import parse_fhir, read_fhir
from monitor.adapters.fhir.resources import looks_like_fhir

__all__ = ["looks_like_fhir", "parse_fhir", "read_fhir"]
