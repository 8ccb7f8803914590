"""What a peer did when it turned us away, and the likely cause, in words.

An association can end before the answer in several ways that look the same from
the request's side (no final status): the peer aborted it, asked to release it,
or closed the connection; or we aborted it, waiting in vain. The state machine's
events (:data:`PEER_ENDS`, :data:`WE_END`) tell them apart; :func:`ended_line`
says which, and why a PACS typically does that.
"""

from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from .contexts import syntax_name
from .peer import Peer

PEER_ENDS = {"Evt12": "released", "Evt16": "aborted", "Evt17": "closed"}
"""The state machine's events of the peer ending an association (an A-RELEASE-RQ,
an A-ABORT, the connection closing), and what :func:`ended_line` calls them."""
WE_END = frozenset({"Evt11", "Evt15"})
"""The state machine's events of our own release or abort request."""
WE = "we"
"""Who ended it, when we did."""
DATA_RECEIVED = "Evt10"
"""The state machine's event of a P-DATA-TF from the peer (an answer, or part)."""

ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
"""A presentation context's result: abstract syntax not supported."""
_QUERY_RETRIEVE = "1.2.840.10008.5.1.4.1.2."
"""The prefix of the Query/Retrieve information models' SOP classes."""
_QR_SERVICES = {"1": "C-FIND", "2": "C-MOVE", "3": "C-GET"}
"""The service of a Query/Retrieve model, by the last component of its UID."""
_SERVICE_USER = 1
_CALLING_AE_NOT_RECOGNISED = 3
"""A-ASSOCIATE-RJ reason of the service user: calling AE title not recognised."""
_DONE = {
    "aborted": "aborted the association (A-ABORT)",
    "released": "released the association",
    "closed": "closed the connection",
}


def unknown_ae(calling_ae: str, asked: str = "") -> str:
    """The likely cause of a refusal: the PACS does not know our AE title."""
    allowed = f" or not allowed to {asked}" if asked else ""
    return (
        f"our calling AE title {calling_ae} is likely unknown to that PACS"
        f"{allowed} (add it to the PACS's known modalities, e.g. Orthanc's "
        "DicomModalities)"
    )


def ended_line(
    peer: Peer,
    calling_ae: str,
    ended_by: str,
    asked: str,
    *,
    aborted: bool,
    dimse_timeout: float,
    answered_before: bool = False,
) -> str:
    """Why a request got no final answer: what the peer did, and the likely cause.

    Args:
        peer: The peer asked.
        calling_ae: Our AE title.
        ended_by: Who ended the association first: :data:`WE`, a value of
            :data:`PEER_ENDS`, or "" (not known).
        asked: What it was asked (``C-FIND``, ``C-MOVE``, ``C-GET``).
        aborted: Whether the association ended aborted.
        dimse_timeout: How long we waited for an answer.
        answered_before: Whether the peer had answered on the association: then
            it knows our AE title, and the cause is not said.
    """
    if ended_by in _DONE and answered_before:
        return (
            f"{peer} {_DONE[ended_by]} during a {asked}, after it had answered "
            "on that association"
        )
    if ended_by in _DONE:
        # Accepted, then turned away at the first request: Orthanc does so for
        # an AE title not in its DicomModalities.
        return f"{peer} {_DONE[ended_by]} when asked to {asked}: " + unknown_ae(
            calling_ae, asked
        )
    if ended_by == WE and aborted:
        return (
            f"no answer from {peer} to {asked} within {dimse_timeout:g} s (the "
            "association was aborted)"
        )
    return f"the association with {peer} ended before the {asked} was answered"


def rejection_hint(rejection: A_ASSOCIATE, calling_ae: str) -> str:
    """What to do about an association rejected for our calling AE title.

    "" if it was rejected for another reason.
    """
    if (
        rejection.result_source == _SERVICE_USER
        and rejection.diagnostic == _CALLING_AE_NOT_RECOGNISED
    ):
        return f": {unknown_ae(calling_ae)}"
    return ""


def no_service_hint(rejected: list[PresentationContext]) -> str:
    """Which query/retrieve service the peer lacks.

    Said when only Query/Retrieve contexts were proposed, and refused; "" else.
    """
    uids = {str(c.abstract_syntax) for c in rejected}
    if not uids or not all(uid.startswith(_QUERY_RETRIEVE) for uid in uids):
        return ""
    services = sorted({_QR_SERVICES.get(uid.rsplit(".", 1)[-1], "") for uid in uids})
    names = " or ".join(s for s in services if s) or "query/retrieve"
    return f": it refused the Query/Retrieve context, it offers no {names} service"


def describe_rejected(rejected: list[PresentationContext]) -> list[str]:
    """Each SOP class of rejected contexts, with its syntaxes or why it was refused."""
    syntaxes: dict[str, list[str]] = {}
    results: dict[str, set[int]] = {}
    for context in rejected:
        sop = str(context.abstract_syntax)
        names = syntaxes.setdefault(sop, [])
        names.extend(
            syntax_name(str(ts))
            for ts in context.transfer_syntax
            if syntax_name(str(ts)) not in names
        )
        results.setdefault(sop, set()).add(int(context.result or 0))
    return [
        f"{syntax_name(sop)} (abstract syntax not supported)"
        if results[sop] == {ABSTRACT_SYNTAX_NOT_SUPPORTED}
        else f"{syntax_name(sop)} in {', '.join(names)}"
        for sop, names in syntaxes.items()
    ]
