"""Presentation contexts: which to propose, how to split them over associations.

Every (SOP Class, transfer syntax) pair present gets a context of its own proposing
exactly that syntax, so whatever the receiver prefers it can never accept a syntax
that strands a file (proposing several syntaxes in one context lets the receiver pick
one, e.g. Implicit VR or a compressed syntax, that other files of the class are not
in). For each SOP Class whose files are not all Implicit VR Little Endian, one more
context proposes the uncompressed syntaxes not yet proposed: if the receiver refuses
a file's own syntax, the file is decoded (decompressed if it is compressed) and sent
in the one it accepted.
At most 128 contexts fit in one association (PS3.8 9.3.2.2); more SOP classes
than that are spread over further associations.

Items known up front are planned at once (:func:`plan_batches`). Items that arrive
one by one are planned as they come (:class:`Growing`): an association proposes
every pair seen so far, and an item whose pair it did not propose needs a new one.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

MAX_CONTEXTS = 128
FALLBACK_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


class HasSyntax(Protocol):
    """Something to send: a SOP Class and the transfer syntax it is encoded in."""

    @property
    def sop_class_uid(self) -> str:
        """SOP Class UID."""
        ...

    @property
    def transfer_syntax(self) -> str:
        """Transfer syntax UID of the file."""
        ...


T = TypeVar("T", bound=HasSyntax)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One presentation context to propose: an abstract syntax and its syntaxes."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Items to send over one association, and the contexts it proposes."""

    proposals: tuple[Proposal, ...]
    items: tuple[T, ...]


def proposals_for(sop_class: str, syntaxes: Iterable[str]) -> list[Proposal]:
    """The contexts proposed for one SOP Class whose files use ``syntaxes``."""
    present = list(dict.fromkeys(syntaxes))
    proposals = [Proposal(sop_class, (ts,)) for ts in present]
    fallback = tuple(ts for ts in FALLBACK_SYNTAXES if ts not in present)
    if fallback and present != [IMPLICIT_VR_LITTLE_ENDIAN]:
        proposals.append(Proposal(sop_class, fallback))
    return proposals


def plan_batches(items: Sequence[T], limit: int = MAX_CONTEXTS) -> list[Batch[T]]:
    """Group items by SOP Class into associations of at most ``limit`` contexts.

    Items keep their order within a batch; a SOP Class never spans two batches.
    """
    by_class: dict[str, list[T]] = {}
    for item in items:
        by_class.setdefault(item.sop_class_uid, []).append(item)
    batches: list[Batch[T]] = []
    proposals: list[Proposal] = []
    members: list[T] = []
    for sop_class, group in by_class.items():
        needed = proposals_for(sop_class, (i.transfer_syntax for i in group))
        if proposals and len(proposals) + len(needed) > limit:
            batches.append(Batch(tuple(proposals), tuple(members)))
            proposals, members = [], []
        proposals.extend(needed)
        members.extend(group)
    if members:
        batches.append(Batch(tuple(proposals), tuple(members)))
    return batches


class Planned:
    """The contexts of one batch planned up front: they cover all its items.

    Args:
        proposals: The batch's contexts.
    """

    def __init__(self, proposals: Sequence[Proposal]) -> None:
        self._proposals = list(proposals)

    def covers(self, item: HasSyntax) -> bool:
        """True: the batch was planned for its items."""
        return True

    def proposals(self, item: HasSyntax | None) -> list[Proposal]:
        """The batch's contexts."""
        return self._proposals


class Growing:
    """The contexts of items that arrive one by one: every pair seen so far.

    The next association proposes the contexts of every (SOP Class, transfer
    syntax) pair seen (:func:`proposals_for` each class), the item's class first
    and then the classes seen most recently, whole classes up to ``limit``
    contexts. So a pair first seen late costs one new association, and so does
    an item whose class did not fit in the current one (more than ``limit``
    contexts seen in all).

    Args:
        limit: Contexts per association.
        known: (SOP Class, transfer syntax) pairs known before any item.
    """

    def __init__(
        self, limit: int = MAX_CONTEXTS, known: Iterable[tuple[str, str]] = ()
    ) -> None:
        self._limit = limit
        self._seen: dict[str, list[str]] = {}
        """Syntaxes by SOP Class, classes most recently seen last."""
        for sop_class, syntax in known:
            syntaxes = self._seen.setdefault(sop_class, [])
            if syntax not in syntaxes:
                syntaxes.append(syntax)
        self._proposed: set[tuple[str, str]] = set()

    @property
    def known(self) -> bool:
        """Whether pairs are known (an association can be proposed before an item)."""
        return bool(self._seen)

    def covers(self, item: HasSyntax) -> bool:
        """Whether the current association proposed the item's own pair."""
        return (item.sop_class_uid, item.transfer_syntax) in self._proposed

    def proposals(self, item: HasSyntax | None) -> list[Proposal]:
        """The contexts of the next association, which covers ``item`` (if any)."""
        proposals: list[Proposal] = []
        sop_class = ""
        if item is not None:
            sop_class = item.sop_class_uid
            syntaxes = self._seen.pop(sop_class, [])
            if item.transfer_syntax not in syntaxes:
                syntaxes.append(item.transfer_syntax)
            self._seen[sop_class] = syntaxes
            proposals = proposals_for(sop_class, syntaxes)
        for other in reversed(list(self._seen)):
            if other == sop_class:
                continue
            more = proposals_for(other, self._seen[other])
            if len(proposals) + len(more) <= self._limit:
                proposals.extend(more)
        self._proposed = {
            (p.abstract_syntax, p.transfer_syntaxes[0])
            for p in proposals
            if len(p.transfer_syntaxes) == 1
        }
        return proposals


def syntax_name(uid: str) -> str:
    """A transfer syntax or SOP Class UID by its name where pydicom knows it."""
    from pydicom.uid import UID  # noqa: PLC0415 - for a failure's reason only

    name = UID(uid).name
    return name if name and name != uid else uid
