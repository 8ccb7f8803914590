"""An embedded Storage SCP: receives instances on 127.0.0.1 and writes them as sent.

Used by ``dicom-send demo`` and by the tests. Each instance is written byte for byte
as it arrived (no decode), as ``<SOPInstanceUID>.dcm`` with a file meta header that
names the transfer syntax it came in.
"""

import logging
import re
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, cast

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer

from .contexts import VERIFICATION
from .scu import set_no_delay

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
_UID = re.compile(r"^[0-9.]{1,64}$")


@dataclass(frozen=True, slots=True)
class Received:
    """One instance the receiver stored."""

    path: Path
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str


class StorageReceiver:
    """A Storage SCP on a free port of 127.0.0.1, for use in a ``with`` block.

    Args:
        out_dir: Where to write received instances.
        ae_title: Its AE title; associations calling another title are rejected.
        transfer_syntaxes: The syntaxes it accepts, most preferred first.
        status: The C-STORE status it answers (0x0000 stores the instance).
        tls: A server-side TLS context: it then speaks only TLS.
        max_associations: Associations at once; more are rejected as transient
            ("local limit exceeded").
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        ae_title: str = "STORE-SCP",
        transfer_syntaxes: Sequence[str] = PREFERRED_SYNTAXES,
        status: int = 0x0000,
        tls: ssl.SSLContext | None = None,
        max_associations: int = 16,
    ) -> None:
        self.out_dir = out_dir
        self._tls = tls
        self.ae_title = ae_title
        self.status = status
        self.received: list[Received] = []
        self.associations = 0
        """Associations accepted so far."""
        self.released = 0
        """Associations the peer released properly."""
        self.aborted = 0
        """Associations aborted (by either side)."""
        self._lock = threading.Lock()
        self._ae = AE(ae_title=ae_title)
        self._ae.require_called_aet = True
        self._ae.maximum_associations = max_associations
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            self._ae.add_supported_context(
                context.abstract_syntax, list(transfer_syntaxes)
            )
        self._ae.add_supported_context(VERIFICATION)
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._server = self._ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            ssl_context=self._tls,
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_CONN_OPEN, set_no_delay),
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_RELEASED, self._on_released),
                (evt.EVT_ABORTED, self._on_aborted),
            ],
        )
        log.info("receiver %s listening on 127.0.0.1:%d", self.ae_title, self.port)
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

    def _on_accepted(self, event: evt.Event) -> None:
        with self._lock:
            self.associations += 1

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            self.released += 1

    def _on_aborted(self, event: evt.Event) -> None:
        with self._lock:
            self.aborted += 1

    def _on_store(self, event: evt.Event) -> int:
        if self.status not in (0x0000, 0xB000, 0xB006, 0xB007):
            return self.status
        request = cast(C_STORE, event.request)
        uid = str(request.AffectedSOPInstanceUID)
        if not _UID.match(uid):
            return 0xC210  # cannot understand: not a UID we can name a file by
        target = self.out_dir / f"{uid}.dcm"
        partial = target.with_suffix(".partial")
        partial.write_bytes(event.encoded_dataset())
        partial.replace(target)
        with self._lock:
            self.received.append(
                Received(
                    target,
                    uid,
                    str(event.context.transfer_syntax),
                    str(event.assoc.requestor.ae_title),
                )
            )
        return self.status
