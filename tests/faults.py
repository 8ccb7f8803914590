"""Misbehaving peers: Storage SCPs that answer badly (on cue, or always), and a TCP
proxy that cuts, resets or refuses connections. All on 127.0.0.1, port 0."""

import contextlib
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt

from fw_gear_dicom_send.pacs.receiver import StorageReceiver

# A-ASSOCIATE-RJ: rejected-transient (2), by the service provider's presentation
# layer (3), local limit exceeded (2). PS3.8 9.3.4.
TRANSIENT_REJECT = bytes([0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2])
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
"""The C-STORE statuses of an instance stored: success and the warnings."""


class FaultyReceiver(StorageReceiver):
    """A Storage SCP that misbehaves on the C-STOREs it is told to (counted from 1).

    Args:
        out_dir: Where stored instances go.
        answers: Statuses for the first C-STOREs (0x0000: store it); then it
            stores normally.
        abort_on: C-STOREs on which it aborts the association.
        silent_on: C-STOREs it does not answer for ``silence`` seconds.
        silence: How long it keeps silent.
        comment: An Error Comment to give with each refusal in ``answers``.
        **kwargs: As for :class:`StorageReceiver`.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        answers: Iterable[int] = (),
        abort_on: Iterable[int] = (),
        silent_on: Iterable[int] = (),
        silence: float = 3.0,
        comment: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(out_dir, **kwargs)
        self.answers = list(answers)
        self.abort_on = set(abort_on)
        self.silent_on = set(silent_on)
        self.silence = silence
        self.comment = comment
        self.stores = 0
        """C-STORE requests seen."""

    def _on_store(self, event: Any) -> int | Dataset:
        with self._lock:
            self.stores += 1
            number = self.stores
        if number in self.abort_on:
            event.assoc.abort()
            return 0xC000
        if number in self.silent_on:
            time.sleep(self.silence)
            return 0xC000  # too late: the sender has given up on this association
        if number <= len(self.answers) and self.answers[number - 1] != 0x0000:
            if not self.comment:
                return self.answers[number - 1]
            answer = Dataset()
            answer.Status = self.answers[number - 1]
            answer.ErrorComment = self.comment
            return answer
        return super()._on_store(event)


class AnsweringReceiver(StorageReceiver):
    """A Storage SCP that answers every C-STORE with one status.

    A success or warning status (0x0000, 0xB000, 0xB006, 0xB007) stores the
    instance first; any other refuses it.

    Args:
        out_dir: Where stored instances go.
        status: The status to answer.
        **kwargs: As for :class:`StorageReceiver`.
    """

    def __init__(self, out_dir: Path, *, status: int, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self.status = status

    def _on_store(self, event: Any) -> int | Dataset:
        if self.status not in STORED:
            return self.status
        stored = super()._on_store(event)
        return self.status if stored == 0x0000 else stored


class FaultProxy:
    """A TCP proxy to ``127.0.0.1:target`` that spoils connections on cue.

    Each accepted connection takes the next plan; once they are used up, it
    passes everything. Plans: ``("pass",)``; ``("cut", n)``: close both sides
    after forwarding ``n`` bytes from the sender; ``("reset", n)``: the same with
    a TCP reset; ``("stall", n)``: stop reading from the sender after ``n`` bytes,
    and hold the connection open until the proxy stops; ``("reject",)``: answer
    the association request with an A-ASSOCIATE-RJ (rejected-transient, local
    limit exceeded) itself.
    """

    def __init__(self, target: int, plans: Iterable[tuple[Any, ...]]) -> None:
        self.target = target
        self.plans: deque[tuple[Any, ...]] = deque(plans)
        self.used: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._stop = False
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The port to connect to."""
        return int(self._server.getsockname()[1])

    def __enter__(self) -> "FaultProxy":
        self._spawn(self._accept)
        return self

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop = True
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            plan = self.plans.popleft() if self.plans else ("pass",)
            self.used.append(plan[0])
            threading.Thread(
                target=self._serve, args=(client, plan), daemon=True
            ).start()

    def _serve(self, client: socket.socket, plan: tuple[Any, ...]) -> None:
        if plan[0] == "reject":
            with client:
                header = _read_exactly(client, 6)
                _read_exactly(client, struct.unpack(">I", header[2:6])[0])
                client.sendall(TRANSIENT_REJECT)
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self._sockets.append(upstream)
        limit = plan[1] if plan[0] in ("cut", "reset", "stall") else None
        if plan[0] == "stall":  # a small window, so that the sender's writes block
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._spawn(_pump, upstream, client, None, plan[0], self._stopped)
        _pump(client, upstream, limit, plan[0], self._stopped)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _pump(
    src: socket.socket,
    dst: socket.socket,
    limit: int | None,
    how: str,
    stopped: threading.Event,
) -> None:
    """Copy src to dst; after ``limit`` bytes, cut, reset or stall both."""
    sent = 0
    try:
        while True:
            want = 65536 if limit is None else min(65536, limit - sent)
            data = src.recv(want) if want > 0 else b""
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    if limit is not None and how == "stall":
        stopped.wait()
    if limit is not None and how == "reset":
        for sock in (src, dst):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


class QueryableReceiver(StorageReceiver):
    """A Storage SCP that also answers study-root C-FIND from what it kept.

    Args:
        out_dir: Where stored instances go.
        forget: SOP Instance UIDs it answers 0x0000 for and does not keep (a
            receiver whose storage failed behind a success status).
        image_level: Whether it answers IMAGE-level queries; if not it refuses
            them (0xA900) and answers SERIES level with instance counts.
        **kwargs: As for :class:`StorageReceiver`.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        forget: Iterable[str] = (),
        image_level: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(out_dir, **kwargs)
        self.forget = set(forget)
        self.image_level = image_level
        self.stores = 0
        """C-STORE requests seen."""
        self.kept: dict[str, tuple[str, str]] = {}
        """SOP Instance UID -> (study, series) of what it holds."""
        self._ae.add_supported_context(STUDY_ROOT_FIND)

    def _handlers(self) -> list[Any]:
        return [*super()._handlers(), (evt.EVT_C_FIND, self._on_find)]

    def _on_store(self, event: Any) -> int | Dataset:
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            self.stores += 1
        if uid in self.forget:
            return 0x0000
        status = super()._on_store(event)
        ds = event.dataset
        with self._lock:
            self.kept[uid] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        return status

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier
        level = query.QueryRetrieveLevel
        series = str(query.get("SeriesInstanceUID", ""))
        with self._lock:
            held = [(uid, s) for uid, s in self.kept.items() if s[1] == series]
        if level == "IMAGE":
            if not self.image_level:
                yield 0xA900, None
                return
            for uid, (study, series_uid) in held:
                match = Dataset()
                match.QueryRetrieveLevel = "IMAGE"
                match.StudyInstanceUID = study
                match.SeriesInstanceUID = series_uid
                match.SOPInstanceUID = uid
                yield 0xFF00, match
        elif level == "SERIES" and held:
            match = Dataset()
            match.QueryRetrieveLevel = "SERIES"
            match.StudyInstanceUID = held[0][1][0]
            match.SeriesInstanceUID = series
            match.NumberOfSeriesRelatedInstances = len(held)
            yield 0xFF00, match
        yield 0x0000, None
