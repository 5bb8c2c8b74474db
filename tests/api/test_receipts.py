"""Receipts and the public log through real HTTP: every accepted vote answers with a receipt that
checks offline against the published key, the same receipt every time it is asked for, and the
checkpoints and proofs the routes serve check with RFC 9162 and C2SP alone (``ledger.verify``)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ledger.verify import (
    VerificationError,
    VerifierKey,
    leaf_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)
from projections.polls_file import bundled
from tests.api.helpers import Client, error_of, legacy_user
from tests.conftest import MakeClient, signup_and_login

pytestmark = pytest.mark.usefixtures("app_backend")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


async def verifier(client: Client) -> VerifierKey:
    response = await client.get("/api/v1/log/key")
    assert response.status == 200
    published = await response.json()
    key = VerifierKey.parse(published["verifierKey"])
    assert published["algorithm"] == "Ed25519"
    assert key.name == published["origin"]
    return key


async def vote(
    client: Client, token: str, candidate: int, key: str | None = None, poll: str = "frontend-leader"
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"candidateId": candidate}
    response = await client.post(f"/api/v1/polls/{poll}/votes", json=body, headers=headers)
    assert response.status == 201, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def test_a_json_vote_answers_with_a_receipt_that_checks_offline(client: Client) -> None:
    token = await signup_and_login(client, "voter@example.org")

    answer = await vote(client, token, 3)

    receipt = answer["receipt"]
    checkpoint = verify_receipt(receipt, await verifier(client))
    assert receipt["seq"] == answer["seq"] and receipt["leafIndex"] == answer["seq"] - 1
    assert checkpoint.size == receipt["treeSize"] >= answer["seq"]
    assert '"type":"VoteCast"' in receipt["body"] and '"candidate_id":3' in receipt["body"]
    assert "voter@example.org" not in receipt["body"]


async def test_a_legacy_vote_keeps_its_2020_shape_and_adds_the_receipt(client: Client) -> None:
    token = await legacy_user(client, "old@example.org")

    response = await client.get("/vote?id=1", headers={"Authorization": token})

    assert response.status == 200, await response.text()
    answer = await response.json()
    assert set(answer) == {"id", "name", "voteCount", "seq", "receipt"}
    assert answer["receipt"]["seq"] == answer["seq"]
    verify_receipt(answer["receipt"], await verifier(client))


async def test_a_receipt_with_any_byte_changed_fails_to_verify(client: Client) -> None:
    token = await signup_and_login(client, "flip@example.org")
    receipt = (await vote(client, token, 2))["receipt"]
    key = await verifier(client)

    forged_body = receipt["body"].replace('"candidate_id":2', '"candidate_id":5')
    for forged in (
        {**receipt, "body": forged_body},
        {**receipt, "seq": receipt["seq"] + 1, "leafIndex": receipt["leafIndex"] + 1},
        {**receipt, "checkpoint": receipt["checkpoint"].replace("\n", "\n\n", 1)},
        {**receipt, "inclusionProof": [base64.b64encode(bytes(32)).decode()] + receipt["inclusionProof"]},
    ):
        with pytest.raises(VerificationError):
            verify_receipt(forged, key)


async def test_a_repeated_idempotent_vote_returns_the_same_receipt(client: Client) -> None:
    token = await signup_and_login(client, "again@example.org")
    first = await vote(client, token, 4, key="retry-1")
    others = await signup_and_login(client, "other@example.org")
    await vote(client, others, 1)  # the log moves on between the two

    second = await vote(client, token, 4, key="retry-1")

    assert second == first


async def test_my_receipts_give_every_vote_its_receipt_again(make_client: MakeClient) -> None:
    client = await make_client(config=bundled("club"))
    token = await signup_and_login(client, "many@example.org", part="FE")
    ids = {}
    for poll in ("frontend-leader", "demo-day"):
        answer = await (await client.get(f"/api/v1/polls/{poll}")).json()
        ids[poll] = [c["id"] for c in answer["candidates"]]
    given = [(await vote(client, token, ids["frontend-leader"][0]))["receipt"]]
    other = await signup_and_login(client, "else@example.org", part="FE")
    await vote(client, other, ids["frontend-leader"][1])
    for candidate in ids["demo-day"][:2]:  # a changeable vote: each is a vote of its own
        given.append((await vote(client, token, candidate, poll="demo-day"))["receipt"])

    response = await client.get("/api/v1/me/receipts", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 200, await response.text()
    assert (await response.json())["receipts"] == given


async def test_my_receipts_need_a_token(client: Client) -> None:
    await error_of(await client.get("/api/v1/me/receipts"), 401)


async def test_checkpoints_are_signed_text_and_earlier_ones_stay_retrievable(client: Client) -> None:
    key = await verifier(client)
    token = await signup_and_login(client, "cp@example.org")
    receipt = (await vote(client, token, 1))["receipt"]
    await vote(client, await signup_and_login(client, "cp2@example.org"), 2)

    latest = await client.get("/api/v1/log/checkpoint")
    earlier = await client.get(f"/api/v1/log/checkpoint?size={receipt['treeSize']}")

    assert latest.status == 200 and latest.content_type == "text/plain" and latest.charset == "utf-8"
    assert verify_checkpoint(await latest.text(), key).size > receipt["treeSize"]
    assert await earlier.text() == receipt["checkpoint"]
    await error_of(await client.get("/api/v1/log/checkpoint?size=999999"), 404, "unknown_checkpoint")


async def test_served_proofs_check_against_signed_roots(client: Client) -> None:
    key = await verifier(client)
    token = await signup_and_login(client, "proof@example.org")
    receipt = (await vote(client, token, 1))["receipt"]
    for n in range(5):
        await vote(client, await signup_and_login(client, f"p{n}@example.org"), 2)
    latest = verify_checkpoint(await (await client.get("/api/v1/log/checkpoint")).text(), key)
    old = verify_checkpoint(receipt["checkpoint"], key)

    inclusion = await (await client.get(
        f"/api/v1/log/proof/inclusion?seq={receipt['seq']}&size={latest.size}"
    )).json()
    consistency = await (await client.get(
        f"/api/v1/log/proof/consistency?from={old.size}&to={latest.size}"
    )).json()

    assert inclusion["leafIndex"] == receipt["leafIndex"] and inclusion["treeSize"] == latest.size
    assert unb64(inclusion["leafHash"]) == leaf_hash(receipt["body"].encode())
    verify_inclusion(
        unb64(inclusion["leafHash"]), receipt["leafIndex"], latest.size,
        [unb64(h) for h in inclusion["hashes"]], latest.root,
    )
    assert consistency["from"] == old.size and consistency["to"] == latest.size
    hashes = [unb64(h) for h in consistency["hashes"]]
    verify_consistency(old.size, latest.size, hashes, old.root, latest.root)


@pytest.mark.parametrize("query", [
    "proof/inclusion?seq=3&size=2",  # seq past size
    "proof/inclusion?seq=1&size=100000",  # beyond the head
    "proof/inclusion?seq=0&size=1",
    "proof/inclusion?seq=one&size=2",
    "proof/inclusion?seq=%2B1&size=2",
    "proof/inclusion?seq=1&seq=1&size=2",
    "proof/inclusion?size=2",
    "proof/consistency?from=3&to=2",
    "proof/consistency?from=1&to=100000",
    "proof/consistency?from=0&to=2",
    "proof/consistency?from=1",
    "proof/consistency?from=1&to=2&extra=1",
    "checkpoint?size=-1",
    "checkpoint?size=x",
])
async def test_bad_proof_parameters_are_a_400(client: Client, query: str) -> None:
    await error_of(await client.get(f"/api/v1/log/{query}"), 400)


@pytest.mark.ledger_file
async def test_receipts_and_checkpoints_survive_a_restart_unchanged(make_client: MakeClient) -> None:
    client = await make_client()
    token = await signup_and_login(client, "restart@example.org")
    given = (await vote(client, token, 2))["receipt"]
    key = await verifier(client)
    await client.close()

    again = await make_client()
    response = await again.get("/api/v1/me/receipts", headers={"Authorization": f"Bearer {token}"})

    assert (await response.json())["receipts"] == [given]
    assert await verifier(again) == key


async def test_an_erased_voters_receipt_still_checks_against_the_log_as_served(client: Client) -> None:
    key = await verifier(client)
    token = await signup_and_login(client, "erased@example.org")
    receipt = (await vote(client, token, 6))["receipt"]
    erased = await client.delete(
        "/api/v1/me", json={"password": "password-123"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert erased.status == 204, await erased.text()

    latest = verify_checkpoint(await (await client.get("/api/v1/log/checkpoint")).text(), key)
    inclusion = await (await client.get(
        f"/api/v1/log/proof/inclusion?seq={receipt['seq']}&size={latest.size}"
    )).json()

    verify_receipt(receipt, key)
    verify_inclusion(
        leaf_hash(receipt["body"].encode()), receipt["leafIndex"], latest.size,
        [unb64(h) for h in inclusion["hashes"]], latest.root,
    )
