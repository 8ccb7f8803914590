"""DIMSE status codes and DICOMweb failure reasons, in words.

One describer for every service: ``0xA700 (Refused: Out of Resources)``. The
meanings are pynetdicom's tables (PS3.4 and PS3.7 Annex C); pynetdicom is imported
when a status is first described, which a send that stores everything never does.
"""

import enum

# The Failure Reason (0008,1197) and Warning Reason (0008,1196) values of a STOW-RS
# response (PS3.18 Table I.2-1 and PS3.4 Table GG.4-1) that the storage table lacks.
_REASONS = {
    0x0110: "Processing failure",
    0x0122: "Referenced SOP Class not supported",
    0x0124: "Refused: Not authorized",
    0x0212: "Mismatch of SOP Class and the SOP Instance",
    0xC122: "Referenced Transfer Syntax not supported",
}


class Service(enum.Enum):
    """Which service a status answers: its table of meanings."""

    STORE = "store"
    FIND = "find"
    RETRIEVE = "retrieve"
    """C-MOVE or C-GET."""
    ECHO = "echo"
    STOW = "stow"
    """A STOW-RS Failure Reason or Warning Reason."""


def _meaning(code: int, service: Service) -> str:
    from pynetdicom import status  # noqa: PLC0415 - see the module docstring

    tables = {
        Service.STORE: (status.STORAGE_SERVICE_CLASS_STATUS,),
        Service.FIND: (status.QR_FIND_SERVICE_CLASS_STATUS,),
        Service.RETRIEVE: (
            status.QR_MOVE_SERVICE_CLASS_STATUS,
            status.QR_GET_SERVICE_CLASS_STATUS,
        ),
        Service.ECHO: (status.VERIFICATION_SERVICE_CLASS_STATUS,),
        Service.STOW: (status.STORAGE_SERVICE_CLASS_STATUS,),
    }[service]
    if service is Service.STOW and code in _REASONS:
        return _REASONS[code]
    for table in tables:
        if code in table and table[code][1]:
            return str(table[code][1])
    if code == 0x0000:
        return "Success"
    return "unknown reason" if service is Service.STOW else "unknown status"


def describe(code: int, service: Service = Service.STORE) -> str:
    """A status as ``0xA700 (Refused: Out of Resources)``.

    Args:
        code: The status (or a STOW-RS reason).
        service: Which service answered it.
    """
    return f"0x{code:04X} ({_meaning(code, service)})"
