"""What the gear asks of Flywheel: a job's DICOM files, downloads, the report upload.

Calls go through the flywheel-sdk client that fw-gear's ``GearContext`` builds from
the ``api-key`` input (:func:`connect`). Only a job with that input imports this
module, and with it fw-gear and the SDK, a large import.

Downloads stream to disk (the SDK writes 64 KB chunks as they arrive) and are
retried with exponential back-off on server errors (5xx), 429 and connection errors
for up to ``file_download_retry_time`` seconds. The SDK has its own retries for
429/502/503/504 under that; ours also cover 500, dropped connections and bodies cut
short, and give up at the configured time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backoff
import httpx2
from flywheel.rest import ApiException
from fw_gear import GearContext
from fw_gear.context import GearContextError

from ..atomic import replacing
from ..errors import UsageError
from ..sending.room import Lot
from .files import ContainerRef, FlywheelError, FlywheelFile, Session

log = logging.getLogger(__name__)

FlywheelClient = Any
"""flywheel.Client (the SDK has no type hints)."""

DICOM_TYPE = "dicom"
_CHUNK = 1 << 16
_TOO_MANY_REQUESTS = 429
_SERVER_ERROR = 500


def connect(folder: Path) -> Hierarchy:
    """The job's Flywheel, through the client GearContext makes from the api-key input.

    Args:
        folder: The gear folder (``config.json``, ``manifest.json``).

    Raises:
        UsageError: No client can be made: a bad key, Flywheel unreachable.
    """
    # GearContext logs a failed client construction with a traceback; the error
    # is said here, in one line, instead.
    logging.getLogger("fw_gear.context").setLevel(logging.CRITICAL)
    try:
        context = GearContext(
            gear_path=str(folder),
            manifest_path=str(folder / "manifest.json"),
            config_path=str(folder / "config.json"),
        )
    except GearContextError as exc:
        cause = exc.__cause__ or exc
        raise UsageError(f"cannot use the api-key input: {describe(cause)}") from None
    if context.client is None:
        raise UsageError("cannot use the api-key input: it has no key")
    return Hierarchy(context.client)


def describe(exc: BaseException) -> str:
    """One line saying why a Flywheel call failed."""
    if isinstance(exc, ApiException):
        reason = f" {exc.reason}" if exc.reason else ""
        return f"HTTP {exc.status}{reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _label(container: Any) -> str:
    return str(getattr(container, "label", None) or getattr(container, "id", ""))


class Hierarchy:
    """Reads containers through the client, remembering projects and subjects."""

    def __init__(self, client: FlywheelClient) -> None:
        self._client = client
        self._labels: dict[tuple[str, str], str] = {}

    def _call(self, what: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._client, method)(*args)
        except (ApiException, httpx2.HTTPError) as exc:
            raise FlywheelError(f"cannot read {what}: {describe(exc)}") from None

    def _parent_label(self, kind: str, ident: str | None) -> str:
        if not ident:
            return "unknown"
        key = (kind, ident)
        if key not in self._labels:
            container = self._call(f"{kind} {ident}", f"get_{kind}", ident)
            self._labels[key] = _label(container)
        return self._labels[key]

    def session(self, doc: Any) -> Session:
        """The session named by an SDK session object."""
        parents = getattr(doc, "parents", None)
        group = str(getattr(parents, "group", None) or "unknown")
        project = self._parent_label("project", getattr(parents, "project", None))
        subject = getattr(doc, "subject", None)
        subject_label = (
            _label(subject)
            if getattr(subject, "label", None)
            else self._parent_label("subject", getattr(parents, "subject", None))
        )
        label = _label(doc)
        return Session(
            id=str(doc.id),
            label=label,
            path=f"{group}/{project}/{subject_label}/{label}",
        )

    def session_by_id(self, ident: str) -> Session:
        """The session with this id."""
        return self.session(self._call(f"session {ident}", "get_session", ident))

    def dicom_files(self, destination: ContainerRef) -> list[FlywheelFile]:
        """Every file of type ``dicom`` in the acquisitions under the destination.

        Args:
            destination: The job's destination: an analysis (its parent is used),
                a session, a subject (all its sessions) or an acquisition.

        Raises:
            FlywheelError: A call failed.
            UsageError: The destination is of another type.
        """
        ref = destination
        if ref.type == "analysis":
            analysis = self._call(f"analysis {ref.id}", "get_analysis", ref.id)
            parent = getattr(analysis, "parent", None)
            ref = ContainerRef(
                str(getattr(parent, "type", "")), str(getattr(parent, "id", ""))
            )
            log.info("destination is analysis %s of %s %s", destination.id, *_ref(ref))
        if ref.type == "session":
            return list(self._session_files(self.session_by_id(ref.id)))
        if ref.type == "subject":
            docs = self._call(
                f"sessions of subject {ref.id}", "get_subject_sessions", ref.id
            )
            return [f for doc in docs for f in self._session_files(self.session(doc))]
        if ref.type == "acquisition":
            acquisition = self._call(f"acquisition {ref.id}", "get_acquisition", ref.id)
            session = self.session_by_id(str(acquisition.parents.session))
            return list(_acquisition_files(session, acquisition))
        raise UsageError(
            f"cannot take DICOM files from a {ref.type or 'missing'} destination: "
            "run the gear on a session, subject or acquisition (to export a project, "
            "run one job per session: see the README)"
        )

    def _session_files(self, session: Session) -> Iterator[FlywheelFile]:
        acquisitions = self._call(
            f"acquisitions of session {session.id}",
            "get_session_acquisitions",
            session.id,
        )
        for acquisition in acquisitions:
            yield from _acquisition_files(session, acquisition)

    def input_file(self, name: str, parent: ContainerRef | None) -> FlywheelFile:
        """The ``file`` input as Flywheel knows it, from its parent container.

        Raises:
            FlywheelError: A call failed.
        """
        if parent is not None and parent.type == "acquisition":
            acquisition = self._call(
                f"acquisition {parent.id}", "get_acquisition", parent.id
            )
            session = self.session_by_id(str(acquisition.parents.session))
            return FlywheelFile(session, parent.id, _label(acquisition), name)
        if parent is not None and parent.type == "session":
            return FlywheelFile(self.session_by_id(parent.id), "", "", name)
        return FlywheelFile(None, parent.id if parent else "", "", name)

    def download(
        self,
        file: FlywheelFile,
        dest: Path,
        retry_seconds: float,
        lot: Lot | None = None,
    ) -> None:
        """Stream ``file`` to ``dest``, retrying transient failures.

        Args:
            file: The file.
            dest: Where to write it (written as ``dest.partial``, then renamed).
            retry_seconds: Give up retrying after this long.
            lot: What its bytes take from the work folder's room, each chunk
                before it is written (given back if an attempt fails).

        Raises:
            FlywheelError: The download failed for good.
            Shut: The room was shut (the send has ended) while a chunk waited.
        """
        extra = {} if file.version is None else {"version": file.version}
        api = self._client.acquisitions_api

        def attempt(partial: Path) -> None:
            if lot is not None:
                lot.give(lot.held)  # what an earlier attempt wrote is gone
            response = api.download_file_from_acquisition_with_http_info(
                file.acquisition_id,
                file.name,
                _return_http_data_only=True,
                _preload_content=False,
                **extra,
            )
            try:
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(chunk_size=_CHUNK):
                        if lot is not None:
                            lot.take(len(chunk))
                        out.write(chunk)
            finally:
                response.close()

        def retrying(details: Any) -> None:
            log.warning(
                "download of %s failed (%s), retry %d in %.1f s",
                file.name,
                describe(details["exception"]),
                details["tries"],
                details["wait"],
            )

        fetch = backoff.on_exception(
            backoff.expo,
            (ApiException, httpx2.HTTPError, OSError),
            max_time=retry_seconds,
            giveup=_permanent,
            on_backoff=retrying,
            logger=None,
        )(attempt)
        try:
            with replacing(dest) as partial:
                fetch(partial)
        except (ApiException, httpx2.HTTPError, OSError) as exc:
            if lot is not None:
                lot.give(lot.held)
            raise FlywheelError(f"download failed: {describe(exc)}") from None
        except BaseException:
            if lot is not None:
                lot.give(lot.held)
            raise

    def attach(self, session: Session, path: Path) -> None:
        """Upload ``path`` to the session's files.

        Raises:
            FlywheelError: The upload failed.
        """
        try:
            self._client.upload_file_to_session(session.id, str(path))
        except (ApiException, httpx2.HTTPError, OSError) as exc:
            raise FlywheelError(
                f"cannot attach {path.name} to session {session.label}: {describe(exc)}"
            ) from None


def _ref(ref: ContainerRef) -> tuple[str, str]:
    return ref.type, ref.id


def _permanent(exc: Exception) -> bool:
    """Whether a failed download is not worth retrying."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return not (status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR)
    return not isinstance(exc, httpx2.TransportError)


def _acquisition_files(session: Session, acquisition: Any) -> Iterator[FlywheelFile]:
    for entry in getattr(acquisition, "files", None) or []:
        if getattr(entry, "type", None) != DICOM_TYPE:
            continue
        version = getattr(entry, "version", None)
        size = getattr(entry, "size", None)
        yield FlywheelFile(
            session,
            str(acquisition.id),
            _label(acquisition),
            str(entry.name),
            version if isinstance(version, int) else None,
            size if isinstance(size, int) and size > 0 else 0,
        )
