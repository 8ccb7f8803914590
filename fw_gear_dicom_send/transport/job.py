"""What one worker process of a parallel send is told when it starts."""

from dataclasses import dataclass

from ..dicom.provenance import ProvenanceTag
from .peer import AssociationSettings, Peer
from .retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Job:
    """How one worker sends (all picklable); its items come as it goes."""

    number: int
    peer: Peer
    association: AssociationSettings
    tag: ProvenanceTag
    retry: RetryPolicy
    log_levels: tuple[tuple[str, int], ...]
    known: tuple[tuple[str, str], ...] = ()
    """(SOP Class, transfer syntax) pairs of the send seen so far: its first
    association proposes them, before it is given an item."""
