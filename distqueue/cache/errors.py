"""The exceptions of the cache and result layer: :class:`OutcomeUnknown`, and the others,
defined with the rest in :mod:`distqueue.errors` and named here too."""

from __future__ import annotations

from ..errors import (
    BackendConnectionError,
    ResultMissing,
    ResultTimeout,
    TaskFailed,
    ValueTooLargeError,
)

__all__ = ["OutcomeUnknown", "ResultMissing", "ResultTimeout", "TaskFailed", "ValueTooLargeError"]


class OutcomeUnknown(BackendConnectionError):
    """A counter update was sent, its reply was lost, and no retry could learn what happened:
    the counter may or may not have changed. Raised by ``Cache.incr``/``decr`` instead of
    guessing."""
