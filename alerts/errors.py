"""What the alert service's domain refuses, by class.

The store operations and the alarm lifecycle raise these; callers decide by class, never
by the message's text. The API maps each class to one HTTP status in one place
(``api/app.py``): :class:`NotFound` 404, :class:`Conflict` 409, :class:`Busy` 503,
:class:`Refused` 400.
The message says what is wrong, in words a user can act on.
"""

from __future__ import annotations


class DomainError(ValueError):
    """A change the data does not allow, with what is wrong."""


class NotFound(DomainError):
    """The thing named does not exist (a batch, an alarm, a profile, a user)."""


class Conflict(DomainError):
    """The thing exists but its state does not allow this now (already there, already
    acknowledged, delivered, assigned since a later time)."""


class Refused(DomainError):
    """The request itself is incomplete or invalid (no reason given, no comment, a
    password too short)."""


class Busy(DomainError):
    """Too much is being asked at once (password hashing): try again in a moment."""
