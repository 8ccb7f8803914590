"""A job's files downloaded several at once, each handed to the send when it is there.

:class:`Downloads` is the engine's
:class:`~fw_gear_dicom_send.sending.pipeline.Fetcher` for a job without a ``file``
input: ``download_concurrency`` threads stream the files to the work folder in
order, each taking its bytes from the work folder's room (so that downloads wait
while the send catches up), each retried with back-off
(:meth:`.flywheel.Hierarchy.download`). A download that fails for good fails
only its file: its reason is kept for the report, and the send goes on with the
others. Their progress (files, MB, rate) shows as a bar on a terminal, else as a
log line every few seconds (:class:`~fw_gear_dicom_send.progress.Meter`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

from .. import stopping
from ..progress import Meter, Reading
from ..sanitize import safe_name
from ..sending.pipeline import Fetched
from ..sending.room import Lot, Room, Shut
from .files import FlywheelError, FlywheelFile

if TYPE_CHECKING:
    from .flywheel import Hierarchy

log = logging.getLogger(__name__)

NOT_DOWNLOADED = "interrupted before it was downloaded"
"""The reason of a file that a stop kept from being downloaded."""
_WAIT = 0.1


def destinations(files: list[FlywheelFile], folder: Path) -> list[Path]:
    """Where each file is downloaded to, in order (distinct names)."""
    return [
        folder / f"{number:05d}-{safe_name(file.name)}"
        for number, file in enumerate(files, start=1)
    ]


class Downloads:
    """Downloads a job's files, ``concurrency`` at once, in order.

    Args:
        hierarchy: The job's Flywheel.
        files: The files, in the order they are sent.
        paths: Where each goes (:func:`destinations`).
        retry_seconds: ``file_download_retry_time``.
        concurrency: ``download_concurrency``.
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        files: list[FlywheelFile],
        paths: list[Path],
        retry_seconds: float,
        concurrency: int,
    ) -> None:
        self.errors: dict[int, str] = {}
        """Why a file was not downloaded, by index."""
        self._hierarchy = hierarchy
        self._files = files
        self._paths = paths
        self._retry_seconds = retry_seconds
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="download")
        self._futures: list[Future[Path | None]] = []
        self._lots: list[Lot] = []
        self._stopped = threading.Event()
        self._meter = Meter("files", rate_unit="files/s", logger=log)
        self._ended = 0
        self._bytes = 0
        self._total_bytes = sum(file.size for file in files)
        self._counting = threading.Lock()

    def start(self, room: Room) -> None:
        """Start the downloads, each file's lot made from ``room`` in order."""
        for path in self._paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lots = [room.lot(file.size) for file in self._files]
        self._futures = [
            self._pool.submit(self._download, index)
            for index in range(len(self._files))
        ]

    def fetch(self, index: int) -> Fetched:
        """File ``index`` once it is downloaded; no path if it could not be."""
        future = self._futures[index]
        while True:
            if stopping.requested() and not future.running():
                future.cancel()
            try:
                path = future.result(timeout=_WAIT)
                break
            except FutureTimeout:
                continue
            except BaseException:
                path = None
                break
        if path is None:
            self.errors.setdefault(index, NOT_DOWNLOADED)
            self._lots[index].done()
            return Fetched(None)
        return Fetched(path, self._lots[index], owned=True)

    def stop(self) -> None:
        """Download nothing more; return once no download is running."""
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._meter.close()
        for index, future in enumerate(self._futures):
            if future.cancelled():
                self.errors.setdefault(index, NOT_DOWNLOADED)

    def _download(self, index: int) -> Path | None:
        path = self._download_one(index)
        with self._counting:  # the progress: a bar on a terminal, else a log line
            self._ended += 1
            if path is not None:
                self._bytes += path.stat().st_size
            self._meter(
                Reading(self._ended, len(self._files), self._bytes, self._total_bytes)
            )
        return path

    def _download_one(self, index: int) -> Path | None:
        file, dest, lot = self._files[index], self._paths[index], self._lots[index]
        if self._stopped.is_set() or stopping.requested():
            self.errors[index] = NOT_DOWNLOADED
            return None
        try:
            self._hierarchy.download(file, dest, self._retry_seconds, lot)
        except FlywheelError as exc:
            log.error("%s: %s", file.fw_path, exc)
            self.errors[index] = str(exc)
            return None
        except Shut:
            self.errors[index] = NOT_DOWNLOADED
            return None
        log.debug("downloaded %s (%d bytes)", file.fw_path, dest.stat().st_size)
        return dest
