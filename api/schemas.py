"""Marshmallow schemas: they validate requests and are the source of the OpenAPI document."""

from __future__ import annotations

import unicodedata
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from api.errors import ApiError

MAX_ID = 2**53 - 1
HIDDEN = ("Cc", "Cf")  # Unicode categories: control characters; format characters (U+202E, U+200B...)


def visible(value: str) -> bool:
    """Refuse control characters and format characters: a name or an email with a bidirectional
    override or a zero-width space would read as someone else's."""
    if any(unicodedata.category(c) in HIDDEN for c in value):
        raise ValidationError("must not contain control or invisible format characters")
    return True


def _text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=max_length), visible], **kwargs)


def _email(**kwargs: Any) -> fields.Email:
    return fields.Email(validate=[validate.Length(max=254), visible], **kwargs)


class Strict(Schema):
    """Unknown fields are errors on the JSON API."""


class Trimmed:
    """Fields are validated in the form they are kept in (emails: see ``normalize_email``)."""

    @pre_load
    def _normalize(self, data: Any, **kwargs: Any) -> Any:
        """NFKC and trim the email; trim names, parts and teams, so blanks count as missing."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("email"), str):
            data["email"] = unicodedata.normalize("NFKC", data["email"]).strip()
        for key in ("name", "part", "team"):
            if isinstance(data.get(key), str):
                data[key] = data[key].strip()
        return data


class UserCreateSchema(Trimmed, Strict):
    email = _email(required=True)
    name = _text(100, required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=1024))
    part = _text(32, load_default=None, allow_none=True)
    team = _text(64, load_default=None, allow_none=True)


class LoginSchema(Strict):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class EraseMeSchema(Strict):
    """Erasing one's own account asks for the password again."""

    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class LegacySignupSchema(Trimmed, Schema):
    """The 2020 signup: extra form fields are ignored; short passwords are still accepted."""

    class Meta:
        unknown = EXCLUDE

    email = _email(required=True)
    name = _text(100, required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    part = _text(32, load_default=None, allow_none=True)
    team = _text(64, load_default=None, allow_none=True)


class LegacyLoginSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class VoteRequestSchema(Strict):
    candidateId = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))


class ResultsQuerySchema(Strict):
    at = fields.Integer(validate=validate.Range(min=0, max=MAX_ID), metadata={
        "description": "Ledger position: the tally as it stood right after that event."
    })


class LogoutQuerySchema(Strict):
    everywhere = fields.Boolean(load_default=False, metadata={
        "description": "Log out every token of the user issued so far, not just this one."
    })


class UserSchema(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    part = fields.String(allow_none=True)
    team = fields.String(allow_none=True)
    seq = fields.Integer(required=True, metadata={"description": "Ledger position of the signup."})


class LoginResponseSchema(Schema):
    accessToken = fields.String(required=True)
    tokenType = fields.String(required=True, metadata={"enum": ["Bearer"]})
    expiresIn = fields.Integer(required=True, metadata={"description": "Seconds until it expires."})
    user = fields.Nested(UserSchema, required=True)


class CandidateSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    part = fields.String(allow_none=True)
    team = fields.String(allow_none=True)


class EligibilitySchema(Schema):
    samePart = fields.String(allow_none=True)
    notOwnTeam = fields.Boolean(required=True)


class PollSchema(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["open", "closed"]})
    policy = fields.String(required=True, metadata={"enum": ["single", "changeable", "unlimited"]})
    results = fields.String(required=True, metadata={"enum": ["always", "after_vote", "after_close"]})
    legacy = fields.Boolean(required=True)
    eligibility = fields.Nested(EligibilitySchema, required=True)
    opensAt = fields.Integer(allow_none=True, metadata={"description": "Epoch milliseconds."})
    closesAt = fields.Integer(allow_none=True, metadata={"description": "Epoch milliseconds."})
    candidates = fields.List(fields.Nested(CandidateSchema), required=True)


class PollListSchema(Schema):
    polls = fields.List(fields.Nested(PollSchema), required=True)


class TallySchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    votes = fields.Integer(required=True)
    share = fields.Float(required=True, metadata={"description": "votes / totalVotes (0 when none)."})


class ResultsSchema(Schema):
    pollId = fields.String(required=True)
    asOf = fields.Integer(required=True, metadata={"description": "The ledger position counted up to."})
    totalVotes = fields.Integer(required=True)
    candidates = fields.List(fields.Nested(TallySchema), required=True)


HASH = {"description": "A SHA-256 hash: standard base64 of its 32 bytes."}


class ReceiptSchema(Schema):
    """What proves a vote is in the log, checkable offline with the verifier key alone."""

    seq = fields.Integer(required=True, metadata={"description": "Ledger position of the vote."})
    leafIndex = fields.Integer(required=True, metadata={"description": "seq - 1: its leaf in the tree."})
    leafHash = fields.String(required=True, metadata=HASH)
    treeSize = fields.Integer(required=True, metadata={"description": "Leaves of the signed tree."})
    inclusionProof = fields.List(fields.String(metadata=HASH), required=True)
    checkpoint = fields.String(required=True, metadata={
        "description": "The signed checkpoint (C2SP tlog-checkpoint in a C2SP signed note)."
    })
    body = fields.String(required=True, metadata={"description": "The event's body, as stored and hashed."})


class VoteResponseSchema(Schema):
    seq = fields.Integer(required=True, metadata={"description": "Ledger position of the vote."})
    pollId = fields.String(required=True)
    candidateId = fields.Integer(required=True)
    receipt = fields.Nested(ReceiptSchema, required=True)


class ReceiptListSchema(Schema):
    receipts = fields.List(fields.Nested(ReceiptSchema), required=True)


class LogKeySchema(Schema):
    origin = fields.String(required=True, metadata={"description": "The name checkpoints sign."})
    verifierKey = fields.String(required=True, metadata={
        "description": "The note verifier key: <name>+<key id>+<base64(0x01 || Ed25519 public key)>."
    })
    algorithm = fields.String(required=True)


class InclusionProofSchema(Schema):
    leafIndex = fields.Integer(required=True)
    treeSize = fields.Integer(required=True)
    leafHash = fields.String(required=True, metadata=HASH)
    hashes = fields.List(fields.String(metadata=HASH), required=True)


class ConsistencyProofSchema(Schema):
    from_ = fields.Integer(required=True, data_key="from")
    to = fields.Integer(required=True)
    hashes = fields.List(fields.String(metadata=HASH), required=True)


class CheckpointQuerySchema(Strict):
    size = fields.Integer(validate=validate.Range(min=0, max=MAX_ID), metadata={
        "description": "The tree size of the checkpoint wanted (default: the latest)."
    })


class InclusionQuerySchema(Strict):
    seq = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))
    size = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class ConsistencyQuerySchema(Strict):
    from_ = fields.Integer(required=True, data_key="from", validate=validate.Range(min=1, max=MAX_ID))
    to = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class BallotSchema(Schema):
    pollId = fields.String(required=True)
    voted = fields.Boolean(required=True)
    candidateId = fields.Integer(allow_none=True)
    votes = fields.Integer(required=True, metadata={"description": "Votes cast in this poll."})


class MeSchema(Schema):
    user = fields.Nested(UserSchema, required=True)
    polls = fields.List(fields.Nested(BallotSchema), required=True)


class LegacyCandidateSchema(Schema):
    """A row of the 2020 ``/candidates`` list."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    voteCount = fields.Integer(required=True, metadata={"description": "0 while the results rule hides it."})


class LegacyVoteSchema(LegacyCandidateSchema):
    seq = fields.Integer(required=True, metadata={"description": "Ledger position of the vote."})
    receipt = fields.Nested(ReceiptSchema, required=True)


class LegacyVoteQuerySchema(Schema):
    id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID),
                        metadata={"description": "The candidate's id."})


class TokenQuerySchema(Schema):
    token = fields.String(metadata={"description": "The token (or send it in Authorization)."})


class TokenCheckSchema(Schema):
    valid = fields.Boolean(required=True)
    user = fields.Nested(UserSchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    seq = fields.Integer(required=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    invalid = fields.Dict(keys=fields.String(), required=True, data_key="fields",
                          metadata={"description": "Each invalid field and what is wrong with it."})
    requestId = fields.String()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data``; a 400 naming every invalid field otherwise."""
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_body", "the body must be a JSON object")
    try:
        result: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        flat: dict[str, object] = {str(key): _first(value) for key, value in messages.items()}
        raise ApiError(400, "invalid_fields", "some fields are missing or invalid", flat) from None
    return result


def _first(value: Any) -> str:
    """The first message of a field's (possibly nested) messages."""
    if isinstance(value, dict):
        return _first(next(iter(value.values()), ""))
    if isinstance(value, list):
        return _first(value[0]) if value else ""
    return str(value)


# Schemas are stateless once built, and building one costs more than loading with it.
USER_CREATE = UserCreateSchema()
LOGIN = LoginSchema()
ERASE_ME = EraseMeSchema()
LOGOUT_QUERY = LogoutQuerySchema()
LEGACY_SIGNUP = LegacySignupSchema()
LEGACY_LOGIN = LegacyLoginSchema()
VOTE_REQUEST = VoteRequestSchema()
RESULTS_QUERY = ResultsQuerySchema()
CHECKPOINT_QUERY = CheckpointQuerySchema()
INCLUSION_QUERY = InclusionQuerySchema()
CONSISTENCY_QUERY = ConsistencyQuerySchema()
