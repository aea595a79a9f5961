"""The UWS 1.1 execution phases and the transitions allowed between them (§2.1.3)."""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """A job's execution phase."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


#: Phases in which a job may still change by itself (WAIT blocks in these).
ACTIVE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
#: Phases a job ends in.
FINAL = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})

#: EXECUTING may go back to QUEUED only when the worker running the job was
#: lost (killed): the service queues it again (:func:`vo_archive.vo.uws.worker.
#: recover_stalled`); UWS 1.1 leaves how a service runs a queued job to it.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.QUEUED, Phase.ABORTED, Phase.ERROR}),
    Phase.QUEUED: frozenset({Phase.EXECUTING, Phase.ABORTED, Phase.ERROR}),
    Phase.EXECUTING: frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED,
                                Phase.QUEUED}),
    Phase.COMPLETED: frozenset({Phase.ARCHIVED}),
    Phase.ERROR: frozenset({Phase.ARCHIVED}),
    Phase.ABORTED: frozenset({Phase.ARCHIVED}),
    Phase.HELD: frozenset({Phase.QUEUED, Phase.ABORTED}),
    Phase.SUSPENDED: frozenset({Phase.EXECUTING, Phase.ABORTED}),
    Phase.UNKNOWN: frozenset(),
    Phase.ARCHIVED: frozenset(),
}


class PhaseError(Exception):
    """A transition UWS does not allow."""


def check_transition(current: Phase, new: Phase) -> None:
    """Raise :class:`PhaseError` unless ``current`` may become ``new``."""
    if new not in TRANSITIONS[current]:
        raise PhaseError(f"a {current.value} job cannot become {new.value}")
