"""The exceptions of the cache and result layer, defined with the others in
:mod:`distqueue.errors` and named here too."""

from __future__ import annotations

from ..errors import ResultMissing, ResultTimeout, TaskFailed, ValueTooLargeError

__all__ = ["ResultMissing", "ResultTimeout", "TaskFailed", "ValueTooLargeError"]
