"""Domain errors: each carries the stable machine code that clients see."""

from __future__ import annotations


class DomainError(Exception):
    """A command refused by the rules. ``code`` is stable; the message is for people."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class EmailTakenError(DomainError):
    code = "email_taken"


class UnknownUserError(DomainError):
    code = "unknown_user"


class UnknownPollError(DomainError):
    code = "unknown_poll"


class UnknownCandidateError(DomainError):
    code = "unknown_candidate"


class AlreadyVotedError(DomainError):
    code = "already_voted"


class PollClosedError(DomainError):
    code = "poll_closed"


class PollNotOpenError(DomainError):
    code = "poll_not_open"


class NotEligibleError(DomainError):
    code = "not_eligible"


class ResultsNotOpenError(DomainError):
    code = "results_not_open"


class IdempotencyConflictError(DomainError):
    code = "idempotency_key_reused"


class InvalidValueError(DomainError):
    code = "invalid_fields"


class PollConfigError(DomainError):
    code = "invalid_polls_file"
