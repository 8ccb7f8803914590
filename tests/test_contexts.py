"""Presentation context planning."""

from dataclasses import dataclass

from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
)

from fw_gear_dicom_send.transport.contexts import Proposal, plan_batches, proposals_for


@dataclass(frozen=True)
class Item:
    sop_class_uid: str
    transfer_syntax: str


def test_one_context_per_syntax_plus_an_uncompressed_fallback() -> None:
    assert proposals_for(
        CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian]
    ) == [
        Proposal(CTImageStorage, (JPEG2000Lossless,)),
        Proposal(CTImageStorage, (ExplicitVRLittleEndian,)),
        Proposal(CTImageStorage, (ImplicitVRLittleEndian,)),
    ]
    assert proposals_for(MRImageStorage, [DeflatedExplicitVRLittleEndian]) == [
        Proposal(MRImageStorage, (DeflatedExplicitVRLittleEndian,)),
        Proposal(MRImageStorage, (ExplicitVRLittleEndian, ImplicitVRLittleEndian)),
    ]


def test_implicit_only_needs_no_fallback() -> None:
    assert proposals_for(CTImageStorage, [ImplicitVRLittleEndian] * 3) == [
        Proposal(CTImageStorage, (ImplicitVRLittleEndian,))
    ]


def test_batches_hold_at_most_the_limit_and_never_split_a_class() -> None:
    items = [Item(f"1.2.3.{i % 100}", ExplicitVRLittleEndian) for i in range(400)]
    batches = plan_batches(items)
    assert [len(b.proposals) for b in batches] == [128, 72]
    assert sum(len(b.items) for b in batches) == 400
    classes = [{i.sop_class_uid for i in b.items} for b in batches]
    assert not classes[0] & classes[1]
    for batch in batches:
        proposed = {p.abstract_syntax for p in batch.proposals}
        assert {i.sop_class_uid for i in batch.items} == proposed
