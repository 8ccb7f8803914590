"""What a send is asked to do (:class:`SendRequest`) and what it returns.

Values only: the front doors build a request without importing the transports.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..dicom.provenance import ProvenanceTag
from ..errors import UsageError
from ..settings import (
    COMMIT_LISTEN_PORT,
    COMMIT_TIMEOUT,
    DEFAULT_ASSOCIATIONS,
    MAX_ASSOCIATIONS,
    Associations,
    Labels,
    association_count,
    seconds,
    whole,
)
from ..status import ExitStatus
from ..transport.peer import AssociationSettings, Peer, StowSettings
from ..transport.retry import RetryPolicy
from .budget import Limits
from .room import DEFAULT_CAPACITY

if TYPE_CHECKING:  # the report's module is imported once a run has ended
    from .report import Row, Summary


@dataclass(frozen=True, slots=True)
class CommitSettings:
    """How to ask for Storage Commitment, and where its answers come.

    Use :meth:`parse` to build it from what a user gave: the values are checked
    against ``settings.BOUNDS``.
    """

    port: int | None = COMMIT_LISTEN_PORT
    """Where we listen for the event reports a receiver sends on an association
    of its own; None: only on the association of the request."""
    timeout: float = COMMIT_TIMEOUT
    """Seconds to wait for the event reports."""
    host: str = "0.0.0.0"  # noqa: S104 - a listener a PACS must reach
    """The address to listen on."""

    @classmethod
    def parse(
        cls, port: object, timeout: object, labels: Labels | None = None
    ) -> "CommitSettings":
        """Checked settings; ``port`` 0: no listener.

        Raises:
            UsageError: A value out of range.
        """
        named = {"port": "commit port", "timeout": "commit timeout", **(labels or {})}
        listen = whole("commit_port", port, named["port"])
        return cls(
            port=listen or None,
            timeout=seconds("commit_timeout", timeout, named["timeout"]),
        )


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Everything a send needs."""

    paths: tuple[Path, ...]
    peer: Peer | None = None
    """The DIMSE receiver (C-STORE); or ``stow`` instead."""
    association: AssociationSettings = field(default_factory=AssociationSettings)
    tag: ProvenanceTag = field(default_factory=ProvenanceTag)
    limits: Limits = field(default_factory=Limits)
    work_dir: Path | None = None
    """Where archives are extracted (a temporary folder inside it); system temp if
    None."""
    labels: tuple[str, ...] = ()
    """How the report names each path, in order (default: the path itself)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    associations: Associations = DEFAULT_ASSOCIATIONS
    """Associations at once (worker processes); fewer for small sends. ``auto``:
    as many as the receiver rewards, up to ``max_associations``."""
    max_associations: int = MAX_ASSOCIATIONS
    """The most associations ``auto`` opens."""
    already_stored: frozenset[str] = frozenset()
    """SOP Instance UIDs stored by an earlier run: reported, not sent again."""
    skip_existing: bool = False
    """Ask the receiver first (C-FIND) and send only what it does not hold."""
    verify: bool = False
    """Afterwards, ask the receiver (C-FIND) whether it holds every instance
    stored; an instance it does not show makes the run incomplete."""
    stow: StowSettings | None = None
    """Send by DICOMweb STOW-RS instead of C-STORE."""
    commit: CommitSettings | None = None
    """Afterwards, ask the receiver for Storage Commitment of every instance
    stored; an instance it does not commit to makes the run incomplete."""
    work_budget: int | None = DEFAULT_CAPACITY
    """Bytes the work folder holds at once (downloads, archive members); None: no
    bound. Listing and extraction wait for room (see :mod:`.room`)."""

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.stow is None):
            raise UsageError("send to a DIMSE receiver or by STOW-RS: one of the two")
        if self.stow is not None and (self.verify or self.skip_existing):
            raise UsageError("verify and skip-existing ask a DIMSE receiver (C-FIND)")
        if self.stow is not None and self.commit is not None:
            raise UsageError("Storage Commitment asks a DIMSE receiver (N-ACTION)")
        association_count(self.associations, "associations", typed=True)
        whole("max_associations", self.max_associations, "max_associations")

    @property
    def most_associations(self) -> int:
        """The most associations open at once: the number, or ``auto``'s ceiling."""
        if isinstance(self.associations, int):
            return self.associations
        return self.max_associations


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a send has come."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RunResult:
    """The rows of a run and what stopped it, if anything did."""

    rows: "tuple[Row, ...]"
    seconds: float
    error: str | None = None
    """Why sending stopped early, if it did: no association could be opened, or
    the run was interrupted."""
    interrupted: bool = False
    """Stopped by SIGINT or SIGTERM (:mod:`~fw_gear_dicom_send.stopping`); the rows
    not sent say so, and the entry point says which signal in its exit status."""
    associations: str = ""
    """How many associations the send used and why no more (the pacing's summary,
    e.g. ``4 associations``); empty if it did not go over worker processes."""

    @property
    def summary(self) -> "Summary":
        """Counts and speed."""
        from .report import summarize  # noqa: PLC0415 - see the imports

        return summarize(self.rows, self.seconds, self.associations)

    @property
    def exit_status(self) -> ExitStatus:
        """INTERRUPTED if stopped by the user, else what the rows say."""
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        return self.summary.exit_status


ProgressCallback = Callable[[Progress], None]
