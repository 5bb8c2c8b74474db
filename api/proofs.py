"""The public log under ``/api/v1/log``: signed checkpoints, the verifier key, inclusion and
consistency proofs (RFC 9162, C2SP formats), and the caller's receipts. Hashes are bytes here:
the JSON encoder writes them in standard base64."""

from __future__ import annotations

from aiohttp import web

from api.actions import authenticate
from api.bodies import query_values
from api.errors import ApiError
from api.keys import LEDGER
from api.responses import json_response
from api.schemas import CHECKPOINT_QUERY, CONSISTENCY_QUERY, INCLUSION_QUERY, load
from projections.service import VoteLedger

routes = web.RouteTableDef()
LOG = "/api/v1/log"


def _within_head(ledger: VoteLedger, **sizes: int) -> None:
    head = ledger.state.head_seq
    for name, size in sizes.items():
        if size > head:
            raise ApiError(
                400, "invalid_query", f"the log ends at seq {head}", {name: "beyond the head of the log"}
            )


@routes.get(f"{LOG}/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    """The latest signed checkpoint, or (``?size=N``) the one signed at that tree size."""
    size = load(CHECKPOINT_QUERY, query_values(request, ("size",))).get("size")
    note = await request.app[LEDGER].checkpoint(size)
    if note is None:
        raise ApiError(404, "unknown_checkpoint", f"no checkpoint was signed at tree size {size}")
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


@routes.get(f"{LOG}/key")
async def key(request: web.Request) -> web.Response:
    origin, verifier_key = request.app[LEDGER].log_key()
    return json_response({"origin": origin, "verifierKey": verifier_key, "algorithm": "Ed25519"})


@routes.get(f"{LOG}/proof/inclusion")
async def inclusion(request: web.Request) -> web.Response:
    """Proof that the event at ``seq`` is leaf ``seq - 1`` of the tree of ``size`` leaves."""
    query = load(INCLUSION_QUERY, query_values(request, ("seq", "size")))
    seq, size = query["seq"], query["size"]
    if seq > size:
        raise ApiError(400, "invalid_query", "seq must not be past size", {"seq": "past size"})
    ledger = request.app[LEDGER]
    _within_head(ledger, size=size)
    proof = await ledger.inclusion(seq, size)
    return json_response({
        "leafIndex": seq - 1, "treeSize": size, "leafHash": proof.leaf, "hashes": proof.hashes,
    })


@routes.get(f"{LOG}/proof/consistency")
async def consistency(request: web.Request) -> web.Response:
    """Proof that the tree of ``to`` leaves extends the tree of ``from`` leaves unchanged."""
    query = load(CONSISTENCY_QUERY, query_values(request, ("from", "to")))
    old, new = query["from_"], query["to"]
    if old > new:
        raise ApiError(400, "invalid_query", "from must not be past to", {"from": "past to"})
    ledger = request.app[LEDGER]
    _within_head(ledger, to=new)
    hashes = await ledger.consistency(old, new)
    return json_response({"from": old, "to": new, "hashes": hashes})


@routes.get("/api/v1/me/receipts")
async def receipts(request: web.Request) -> web.Response:
    """The caller's receipts, one per vote, each as it was given when the vote was cast."""
    identity = authenticate(request)
    ledger = request.app[LEDGER]
    found = [await ledger.receipt(seq) for seq in await ledger.vote_seqs(identity.user.user_id)]
    return json_response({"receipts": found})
