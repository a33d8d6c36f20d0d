"""HL7 v2 ORU^R01 lab results (v2.3 to 2.5.1) to canonical CBC results.

- ``encoding``: MLLP framing, segment terminators, MSH-1/MSH-2 encoding characters, escape
  sequences, field access.
- ``segments``: the MSH, PID, OBR, SPM and OBX readers (one OBX row: ``read_obx``).
- ``message``: ORU^R01 assembly, OBX rows grouped per specimen into results (``parse_oru``).
"""

from monitor.adapters.errors import AdapterError
from monitor.adapters.hl7v2.encoding import looks_like_hl7
from monitor.adapters.hl7v2.message import parse_oru, read_oru
from monitor.adapters.hl7v2.segments import SUPPORTED_VERSIONS

__all__ = ["SUPPORTED_VERSIONS", "AdapterError", "looks_like_hl7", "parse_oru", "read_oru"]
