"""dicom-send: push DICOM files, folders and archives to a PACS.

The engine tags every instance with a private provenance element, streams it to the
receiver over one or more associations (or by DICOMweb STOW-RS) and accounts for
every input file in a report. It runs as the ``dicom-send`` command line and as a
Flywheel gear; this module is its Python API::

    from fw_gear_dicom_send import Peer, SendRequest, send, write_csv

    request = SendRequest(paths=(Path("a.zip"),), peer=Peer("pacs", 104, "PACS"))
    result = send(request)
    write_csv(result.rows, Path("report.csv"))

Each name is imported from its module when first used, so that importing the
package (as the command line does first) costs nothing.
"""

import logging
from importlib import import_module
from typing import TYPE_CHECKING, Any

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .dicom.provenance import ProvenanceTag
    from .errors import AssociationError, DicomSendError, UsageError
    from .pacs.filing import Layout
    from .pacs.levels import Level, Model
    from .pacs.query import Query, QueryError, find
    from .pacs.receiver import StorageReceiver
    from .pacs.retrieve import RetrieveError, RetrieveResult, Target, get, move
    from .sending.engine import send
    from .sending.report import Row, Summary, write_csv
    from .sending.request import Progress, RunResult, SendRequest
    from .status import ExitStatus, InstanceStatus
    from .transport.association import Client
    from .transport.peer import AssociationSettings, Peer, StowSettings
    from .transport.retry import RetryPolicy
    from .transport.tls import Profile, TlsSettings

_WHERE = {
    "send": ".sending.engine",
    "SendRequest": ".sending.request",
    "RunResult": ".sending.request",
    "Progress": ".sending.request",
    "Row": ".sending.report",
    "Summary": ".sending.report",
    "write_csv": ".sending.report",
    "Peer": ".transport.peer",
    "AssociationSettings": ".transport.peer",
    "StowSettings": ".transport.peer",
    "TlsSettings": ".transport.tls",
    "Profile": ".transport.tls",
    "RetryPolicy": ".transport.retry",
    "ProvenanceTag": ".dicom.provenance",
    "Client": ".transport.association",
    "Level": ".pacs.levels",
    "Model": ".pacs.levels",
    "Query": ".pacs.query",
    "QueryError": ".pacs.query",
    "find": ".pacs.query",
    "Target": ".pacs.retrieve",
    "RetrieveResult": ".pacs.retrieve",
    "RetrieveError": ".pacs.retrieve",
    "get": ".pacs.retrieve",
    "move": ".pacs.retrieve",
    "StorageReceiver": ".pacs.receiver",
    "Layout": ".pacs.filing",
    "DicomSendError": ".errors",
    "UsageError": ".errors",
    "AssociationError": ".errors",
    "ExitStatus": ".status",
    "InstanceStatus": ".status",
}

__all__ = [
    "AssociationError",
    "AssociationSettings",
    "Client",
    "DicomSendError",
    "ExitStatus",
    "InstanceStatus",
    "Layout",
    "Level",
    "Model",
    "Peer",
    "Profile",
    "Progress",
    "ProvenanceTag",
    "Query",
    "QueryError",
    "RetrieveError",
    "RetrieveResult",
    "RetryPolicy",
    "Row",
    "RunResult",
    "SendRequest",
    "StorageReceiver",
    "StowSettings",
    "Summary",
    "Target",
    "TlsSettings",
    "UsageError",
    "find",
    "get",
    "move",
    "send",
    "write_csv",
]


def __getattr__(name: str) -> Any:
    """A name of the API, imported from its module; or ``__version__``.

    ``__version__`` is read from the installed metadata (importlib.metadata is
    imported only then).
    """
    if name == "__version__":
        from importlib import metadata  # noqa: PLC0415 - only --version asks

        try:
            return metadata.version("fw-gear-dicom-send")
        except metadata.PackageNotFoundError:  # a source tree
            return "0+unknown"
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]
