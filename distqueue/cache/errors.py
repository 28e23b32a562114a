"""The exceptions of the cache and result layer, defined with the rest in
:mod:`distqueue.errors` and named here too."""

from __future__ import annotations

from ..errors import (
    OutcomeUnknownError,
    ResultMissing,
    ResultTimeout,
    TaskFailed,
    ValueTooLargeError,
)

__all__ = [
    "OutcomeUnknownError",
    "ResultMissing",
    "ResultTimeout",
    "TaskFailed",
    "ValueTooLargeError",
]
