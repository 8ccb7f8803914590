"""An embedded Storage SCP: receives instances and writes them as sent.

Used by ``dicom-send listen``, ``retrieve`` (the C-MOVE destination), ``demo`` and
the tests. Each instance is written byte for byte as it arrived, with a file meta
header that names the transfer syntax it came in, atomically (a temporary name,
then a rename), filed as its :class:`~fw_gear_dicom_send.pacs.filing.Layout` says. When
it cannot be written (disk full, no permission) the peer is answered 0xA700 (Out of
Resources) and nothing partial is left. Every association ends with one log line.
"""

import logging
import re
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, cast

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer

from ..dicom.uids import VERIFICATION
from ..settings import (
    LISTEN_IDLE_TIMEOUT,
    LISTEN_REQUEST_TIMEOUT,
    RECEIVER_AE_TITLE,
    RECEIVER_ASSOCIATIONS,
)
from ..transport.tcp import set_no_delay
from .filing import Layout, Received, relative_path, write_atomically
from .server import AcceptorAE, arm_request_deadline

log = logging.getLogger(__name__)

# Implicit VR first: when a context proposes several syntaxes it is the one chosen.
_FIRST = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
PREFERRED_SYNTAXES: tuple[str, ...] = _FIRST + tuple(
    ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _FIRST
)
REQUEST_TIMEOUT = LISTEN_REQUEST_TIMEOUT
"""Seconds a new connection has to send its association request."""
IDLE_TIMEOUT = LISTEN_IDLE_TIMEOUT
"""Seconds an established association may stay silent before it is aborted."""
_UID = re.compile(r"^[0-9.]{1,64}$")
OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC210


class StorageReceiver:
    """A Storage SCP on a free port of 127.0.0.1, for use in a ``with`` block.

    Args:
        out_dir: Where to write received instances.
        ae_title: Its AE title; associations calling another title are rejected.
        transfer_syntaxes: The syntaxes it accepts, most preferred first.
        tls: A server-side TLS context: it then speaks only TLS.
        max_associations: Associations at once; more are rejected as transient
            ("local limit exceeded").
        layout: How received instances are filed under ``out_dir``.
        host: The address to listen on.
        port: The port to listen on (0: any free port).
        request_timeout: Seconds a new connection has to send its association
            request (and to finish its TLS handshake) before it is closed.
            Until then it does not count against ``max_associations``.
        idle_timeout: Seconds an established association may stay silent (or
            stall within a PDU) before it is aborted.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        ae_title: str = RECEIVER_AE_TITLE,
        transfer_syntaxes: Sequence[str] = PREFERRED_SYNTAXES,
        tls: ssl.SSLContext | None = None,
        max_associations: int = RECEIVER_ASSOCIATIONS,
        layout: Layout = Layout.FLAT,
        host: str = "127.0.0.1",
        port: int = 0,
        request_timeout: float = REQUEST_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.out_dir = out_dir
        self.layout = layout
        self._address = (host, port)
        self._filer = InstanceFiler(out_dir, layout)
        self._tls = tls
        self.ae_title = ae_title
        self.associations = 0
        """Associations accepted so far."""
        self.released = 0
        """Associations the peer released properly."""
        self.aborted = 0
        """Associations aborted (by either side)."""
        self._lock = threading.Lock()
        self._ae = AcceptorAE(ae_title=ae_title)
        self._ae.require_called_aet = True
        self._ae.maximum_associations = max_associations
        # The ARTIM timer: how long a new connection may stay silent.
        self._ae.acse_timeout = request_timeout
        # The idle timer of an established association, and each socket's timeout.
        self._ae.network_timeout = idle_timeout
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            self._ae.add_supported_context(
                context.abstract_syntax, list(transfer_syntaxes)
            )
        self._ae.add_supported_context(VERIFICATION)
        self._server: ThreadedAssociationServer | None = None

    @property
    def received(self) -> list[Received]:
        """The instances stored so far, in order of arrival."""
        return self._filer.received

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._server = self._ae.start_server(
            self._address,
            block=False,
            ssl_context=self._tls,
            evt_handlers=self._handlers(),
        )
        log.info(
            "receiver %s listening on %s:%d%s",
            self.ae_title,
            self._address[0],
            self.port,
            " (TLS)" if self._tls is not None else "",
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _handlers(self) -> list[evt.EventHandlerType]:
        """The event handlers bound to the server (a subclass may add some)."""
        return [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
        ]

    def _on_open(self, event: evt.Event) -> None:
        """Arm the connection's deadline for its association request."""
        set_no_delay(event)
        arm_request_deadline(event.assoc, self._ae.acse_timeout or REQUEST_TIMEOUT)

    def _on_accepted(self, event: evt.Event) -> None:
        with self._lock:
            self.associations += 1

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            self.released += 1
        self._log_association(event, "released")

    def _on_aborted(self, event: evt.Event) -> None:
        with self._lock:
            self.aborted += 1
        self._log_association(event, "aborted")

    def _on_store(self, event: evt.Event) -> int | Dataset:
        """File the instance; the status to answer.

        A subclass may answer otherwise, or a Dataset: the status with, say, an
        Error Comment.
        """
        return self._filer(event)

    def _log_association(self, event: evt.Event, how: str) -> None:
        """One line per association: who, how it ended, what it stored."""
        stored, failed = self._filer.counts(event.assoc, forget=True)
        requestor = event.assoc.requestor
        log.info(
            "association from %s@%s:%s %s: %d stored, %d failed",
            requestor.ae_title,
            requestor.address,
            requestor.port,
            how,
            stored,
            failed,
        )


class InstanceFiler:
    """An EVT_C_STORE handler that files each instance under ``out_dir``.

    Args:
        out_dir: The output folder.
        layout: How instances are filed in it.
    """

    def __init__(self, out_dir: Path, layout: Layout = Layout.FLAT) -> None:
        self.out_dir = out_dir
        self.layout = layout
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._per_association: dict[int, list[int]] = {}

    def counts(self, assoc: object, *, forget: bool = False) -> tuple[int, int]:
        """Instances stored and failed over one association."""
        with self._lock:
            if forget:
                stored, failed = self._per_association.pop(id(assoc), [0, 0])
            else:
                stored, failed = self._per_association.get(id(assoc), [0, 0])
        return stored, failed

    def _count(self, event: evt.Event, stored: bool) -> None:
        with self._lock:
            counts = self._per_association.setdefault(id(event.assoc), [0, 0])
            counts[0 if stored else 1] += 1

    def __call__(self, event: evt.Event) -> int:
        """File the instance of a C-STORE request; the status to answer."""
        request = cast(C_STORE, event.request)
        uid = str(request.AffectedSOPInstanceUID)
        if not _UID.match(uid):
            self._count(event, stored=False)
            return _CANNOT_UNDERSTAND  # not a UID we can name a file by
        try:
            target = self.out_dir / self._place(event, uid)
            write_atomically(target, event.encoded_dataset())
        except OSError as exc:
            log.warning("cannot store %s: %s", uid, exc.strerror or exc)
            self._count(event, stored=False)
            return OUT_OF_RESOURCES
        except Exception as exc:  # a data set pydicom cannot decode
            log.warning("cannot store %s: %s", uid, exc)
            self._count(event, stored=False)
            return _CANNOT_UNDERSTAND
        self._count(event, stored=True)
        with self._lock:
            self.received.append(
                Received(
                    target,
                    uid,
                    str(event.context.transfer_syntax),
                    str(event.assoc.requestor.ae_title),
                )
            )
        return 0x0000

    def _place(self, event: evt.Event, uid: str) -> Path:
        """Where an instance goes under ``out_dir``: named by its data set's values.

        The data set's SOP Instance UID, not the request's: the request carries
        only the first of several values.
        """
        ds = event.dataset
        return relative_path(
            self.layout,
            _text(ds, "PatientID"),
            _text(ds, "StudyInstanceUID"),
            _text(ds, "SeriesInstanceUID"),
            _text(ds, "SOPInstanceUID") or uid,
        )


def _text(ds: Dataset, keyword: str) -> str:
    """An element's whole value as text, values joined by backslashes."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)
