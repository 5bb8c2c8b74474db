"""The page's receipt verifier (``api/web/static/receipt.js``), run in Chromium on published test
vectors rather than only on receipts this service made: transparency-dev/merkle's inclusion proofs
(the RFC 6962 reference tree and its probes of malformed proofs), and the C2SP and Go signed notes
(``tests/ledger/data/``, where the offline verifier's tests read them too)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Page

from ledger.verify import key_id_of, verifier_key_string
from tests.reliability.helpers import Server

DATA = Path(__file__).resolve().parents[1] / "ledger" / "data"

RUN_INCLUSION = """async (cases) => {
  const m = await import("/assets/receipt.js");
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const out = [];
  for (const c of cases) {
    const proof = (c.proof || []).map(bytes);
    const root = await m.rootFromInclusion(c.leafIdx, c.treeSize, bytes(c.leafHash), proof);
    out.push(root !== null && btoa(String.fromCharCode(...root)) === c.root);
  }
  return out;
}"""

RUN_NOTES = """async (cases) => {
  const m = await import("/assets/receipt.js");
  const out = [];
  for (const c of cases) out.push(await m.noteSignedBy(c.note, c.vkey));
  return out;
}"""


def damaged(line: str) -> str:
    """A signature line with one byte of its signature changed (its key id kept)."""
    dash, name, blob = line.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 1
    return f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"


def signed_with_a_plus_in_its_key(text: str) -> tuple[str, str]:
    """A note signed by a key whose verifier key's base64 holds a ``+``, and that verifier key."""
    for n in range(1000):
        key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"seed %d" % n).digest())
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        vkey = verifier_key_string("plus.example/log", public)
        if "+" in vkey.split("+", 2)[2]:
            blob = key_id_of("plus.example/log", public) + key.sign(text.encode())
            return f"{text}\n\u2014 plus.example/log {base64.b64encode(blob).decode()}\n", vkey
    raise AssertionError("no key of a thousand has a + in its base64")


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def test_inclusion_proofs_of_the_transparency_dev_probes_verify_exactly_when_they_should(
    site: Server, page: Page
) -> None:
    probes: list[dict[str, Any]] = json.loads((DATA / "rfc6962_probes.json").read_text())["inclusion"]
    page.goto(site.url + "/")
    verdicts = page.evaluate(RUN_INCLUSION, probes)
    wrong = [p["file"] for p, ok in zip(probes, verdicts, strict=True) if ok == p["wantErr"]]
    assert len(probes) > 90 and wrong == []


def test_every_inclusion_proof_of_the_rfc6962_reference_tree_verifies(site: Server, page: Page) -> None:
    tree = json.loads((DATA / "rfc6962_tree.json").read_text())
    leaves = [hashlib.sha256(b"\x00" + bytes.fromhex(leaf)).hexdigest() for leaf in tree["leaves"]]
    cases = [{"leafIdx": p["index"], "treeSize": p["size"], "leafHash": hex_to_b64(leaves[p["index"]]),
              "proof": [hex_to_b64(h) for h in p["proof"]], "root": hex_to_b64(tree["roots"][p["size"]])}
             for p in tree["inclusion_proofs"]]
    page.goto(site.url + "/")
    assert len(cases) >= 5 and page.evaluate(RUN_INCLUSION, cases) == [True] * len(cases)


def test_signed_notes_of_c2sp_and_go_verify_and_altered_ones_do_not(site: Server, page: Page) -> None:
    notes = json.loads((DATA / "signed_notes.json").read_text())
    go = notes["go"]
    example = notes["c2sp_example"]
    plus_note, plus_vkey = signed_with_a_plus_in_its_key("example.com/log\n3\nAAAA\n")
    cases = [
        ({"note": plus_note, "vkey": plus_vkey}, True),
        ({"note": example["note"], "vkey": example["vkey"]}, True),
        ({"note": go["text"] + "\n" + go["peter_sig"], "vkey": go["peter_vkey"]}, True),
        ({"note": go["text"] + "\n" + go["enoch_sig"], "vkey": go["enoch_vkey"]}, True),  # a '+' in base64
        ({"note": go["text"] + "\n" + go["peter_sig"] + go["enoch_sig"], "vkey": go["enoch_vkey"]}, True),
        ({"note": go["text"] + "\n" + go["peter_sig"], "vkey": go["enoch_vkey"]}, False),  # not its signer
        ({"note": go["text"] + "\n" + go["peter_sig"] + damaged(go["peter_sig"]),
          "vkey": go["peter_vkey"]}, False),  # a bad signature by the key, beside a good one
        ({"note": go["text"].replace("cryptography", "Cryptography") + "\n" + go["peter_sig"],
          "vkey": go["peter_vkey"]}, False),
        *(({"note": go["text"] + "\n" + go["peter_sig"], "vkey": bad}, False) for bad in go["bad_vkeys"]),
    ]
    page.goto(site.url + "/")
    assert page.evaluate(RUN_NOTES, [c for c, _ in cases]) == [want for _, want in cases]
