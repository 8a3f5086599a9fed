"""The gasless path of a sealed round: a trainer signs the ERC-2771 request the API hands out (EIP-712, for the
market's trusted forwarder) and the service's relayer forwards it, first the commitment, then the reveal, against
a real anvil. Every refusal is problem+json with its status, and is answered before anything is sent."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_utils import keccak

from backend.api.services import Missing
from backend.chain.anvil import mine_at
from backend.chain.forwarder import Forwarder
from backend.chain.training_market import ProjectParams, TrainingMarket

pytestmark = pytest.mark.chain

ETH = 10**18


def _sha(label: str) -> str:
    return keccak(text=label).hex()


def _cid(label: str) -> str:
    return "bafkrei" + keccak(text=label).hex()[:52]


@pytest.fixture
def relay(api, chain_client, dev_accounts):
    """A 2-round project with round 0 open; trainers 13 and 14 registered, tier 2 (trainer), terms accepted and
    signed in. Returns (market, forwarder, project id, [(account, headers), ...])."""
    market = TrainingMarket(chain_client)
    project_id = market.create_project(
        dev_accounts[10],
        ProjectParams(
            initial_model_cid=_cid("model"),
            initial_model_sha256=_sha("model"),
            config_cid=_cid("config"),
            config_sha256=_sha("config"),
            validation_root=_sha("validation root"),
            rounds=2,
            round_duration=3600,
            reveal_window=600,
            aggregation_window=3600,
            min_stake=ETH // 100,
            max_trainers=3,
            aggregator=dev_accounts[11].address,
            arbiter=dev_accounts[12].address,
            challenge_window=0,
            challenge_bond=0,
        ),
        value=ETH,
    )
    trainers = []
    for account in dev_accounts[13:15]:
        market.register(account, project_id, ETH // 100)
        api.grant(account, 2)
        api.accept_terms(account)
        trainers.append((account, api.login(account)))
    forwarder = Forwarder(chain_client, market.forwarder_address())
    return market, forwarder, project_id, trainers


def _url(project_id: int, round_: int, what: str = "commitment") -> str:
    return f"/v1/projects/{project_id}/rounds/{round_}/{what}:relay"


def _signed(forwarder, market, signer, data: bytes, deadline: int, nonce: int | None = None) -> dict:
    request = forwarder.sign(signer, market.address, data, deadline, nonce=nonce)
    return {"nonce": request.nonce, "deadline": deadline, "signature": "0x" + request.signature.hex()}


def _commit_body(market, forwarder, signer, trainer: str, project_id: int, round_: int, label: str, deadline):
    """A relay body committing `trainer` to update `label` (salt returned), signed by `signer` (the trainer, or a
    forger)."""
    salt = secrets.token_bytes(32)
    commitment = market.commitment_of(project_id, round_, trainer, _sha(label), salt)
    body = _signed(forwarder, market, signer, market.commit_call(project_id, round_, commitment), deadline)
    return dict(body, commitment="0x" + commitment.hex()), salt


def _deadline(market, seconds: int = 600) -> int:
    return market.client.timestamp() + seconds


def _problem(reply, status: int, kind: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["type"] == f"/problems/{kind}", reply.text
    return reply.json()


def _committed(market, project_id: int, trainer: str) -> bool:
    return int(market.submission_entry(project_id, 0, trainer).commitment, 16) != 0


def test_a_relayed_commitment_then_reveal_land_as_the_callers(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    deadline = _deadline(market, 7200)
    salt = secrets.token_bytes(32)
    commitment = market.commitment_of(project_id, 0, trainer.address, _sha("u"), salt)
    payload = api.client.get(
        _url(project_id, 0),
        headers=headers,
        params={"commitment": "0x" + commitment.hex(), "deadline": deadline},
    ).json()
    assert payload["primaryType"] == "ForwardRequest"
    assert payload["domain"]["name"] == "trustmarket Forwarder"
    assert payload["domain"]["verifyingContract"] == forwarder.address
    assert (payload["message"]["from"], payload["message"]["to"]) == (trainer.address, market.address)
    assert (payload["message"]["nonce"], payload["message"]["deadline"]) == (0, deadline)
    signature = Account.sign_typed_data(trainer.key, full_message=payload).signature.to_0x_hex()
    before = market.client.w3.eth.get_balance(trainer.address)
    body = {"commitment": "0x" + commitment.hex(), "nonce": 0, "deadline": deadline, "signature": signature}
    reply = api.client.post(_url(project_id, 0), headers=headers, json=body)
    assert reply.status_code == 200, reply.text
    relayed = reply.json()
    assert (relayed["trainer"], relayed["call"], relayed["executed"]) == (
        trainer.address,
        "commitUpdate",
        True,
    )
    assert market.commitments(project_id, 0) == {trainer.address: commitment.hex()}
    assert forwarder.nonce(trainer.address) == 1

    # A reveal before the commits close is refused by the market's own rule, before anything is sent.
    reveal = {"cid": _cid("u"), "sha256": _sha("u"), "salt": "0x" + salt.hex()}
    data = market.reveal_call(project_id, 0, _cid("u"), _sha("u"), salt)
    early = dict(_signed(forwarder, market, trainer, data, deadline), **reveal)
    _problem(
        api.client.post(_url(project_id, 0, "reveal"), headers=headers, json=early), 409, "not-reveal-window"
    )
    mine_at(market.client, market.project(project_id).commit_end + 1)
    reply = api.client.post(_url(project_id, 0, "reveal"), headers=headers, json=early)
    assert reply.status_code == 200, reply.text
    [revealed] = market.submissions(project_id, 0)
    assert (revealed.trainer, revealed.cid, revealed.sha256) == (trainer.address, _cid("u"), _sha("u"))
    assert market.client.w3.eth.get_balance(trainer.address) == before  # the relayer paid the gas


def test_a_reveal_that_does_not_match_the_commitment_is_400(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, salt = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "c", _deadline(market, 7200)
    )
    assert api.client.post(_url(project_id, 0), headers=headers, json=body).status_code == 200
    mine_at(market.client, market.project(project_id).commit_end + 1)
    wrong = {"cid": _cid("other"), "sha256": _sha("other"), "salt": "0x" + salt.hex()}
    data = market.reveal_call(project_id, 0, _cid("other"), _sha("other"), salt)
    signed = dict(_signed(forwarder, market, trainer, data, _deadline(market)), **wrong)
    _problem(
        api.client.post(_url(project_id, 0, "reveal"), headers=headers, json=signed),
        400,
        "commitment-mismatch",
    )
    assert market.submissions(project_id, 0) == []


def test_replay_is_409(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "once", _deadline(market)
    )
    assert api.client.post(_url(project_id, 0), headers=headers, json=body).status_code == 200
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 409, "already-committed")
    assert forwarder.nonce(trainer.address) == 1


def test_an_invalidated_request_is_never_relayed(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "void", _deadline(market)
    )
    assert forwarder.invalidate_nonce(trainer) == 0
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 409, "replayed")
    assert not _committed(market, project_id, trainer.address)


def test_a_signature_by_another_key_is_400(api, relay):
    market, forwarder, project_id, [(trainer, headers), (other, _)] = relay
    forged, _ = _commit_body(market, forwarder, other, trainer.address, project_id, 0, "x", _deadline(market))
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=forged), 400, "invalid-signature")
    # A body signed over another commitment than the one sent fails the same way.
    signed, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "x", _deadline(market)
    )
    signed["commitment"] = "0x" + keccak(text="another").hex()
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=signed), 400, "invalid-signature")
    assert not _committed(market, project_id, trainer.address)


def test_another_trainers_signature_is_never_relayed_as_theirs(api, relay):
    market, forwarder, project_id, [(trainer, _), (other, other_headers)] = relay
    theirs, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "t", _deadline(market)
    )
    named = dict(theirs, trainer=trainer.address)
    _problem(api.client.post(_url(project_id, 0), headers=other_headers, json=named), 403, "not-the-trainer")
    # Without naming the trainer, the service forwards for the caller only, so the signature does not match.
    _problem(
        api.client.post(_url(project_id, 0), headers=other_headers, json=theirs), 400, "invalid-signature"
    )
    assert not _committed(market, project_id, trainer.address)
    assert not _committed(market, project_id, other.address)


def test_expired_deadline_is_400(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 0, "late", _deadline(market, -1)
    )
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 400, "signature-expired")


def test_wrong_round_is_409_and_unknown_ids_are_404(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    ahead, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 1, "r1", _deadline(market)
    )
    _problem(api.client.post(_url(project_id, 1), headers=headers, json=ahead), 409, "wrong-round")
    beyond, _ = _commit_body(
        market, forwarder, trainer, trainer.address, project_id, 5, "r5", _deadline(market)
    )
    _problem(api.client.post(_url(project_id, 5), headers=headers, json=beyond), 404, "unknown-round")
    unknown, _ = _commit_body(market, forwarder, trainer, trainer.address, 99, 0, "p", _deadline(market))
    _problem(api.client.post(_url(99, 0), headers=headers, json=unknown), 404, "unknown-project")
    params = {"commitment": unknown["commitment"]}
    _problem(api.client.get(_url(99, 0), headers=headers, params=params), 404, "unknown-project")


def test_unregistered_caller_is_409(api, relay, dev_accounts):
    market, forwarder, project_id, _ = relay
    outsider = dev_accounts[16]
    api.grant(outsider, 2)
    api.accept_terms(outsider)
    headers = api.login(outsider)
    body, _ = _commit_body(
        market, forwarder, outsider, outsider.address, project_id, 0, "o", _deadline(market)
    )
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 409, "not-registered")
    assert forwarder.nonce(outsider.address) == 0


def test_explorer_tier_lacks_the_scope(api, relay):
    market, forwarder, project_id, _ = relay
    viewer, headers = api.member("relay-viewer", tier=1)
    body, _ = _commit_body(market, forwarder, viewer, viewer.address, project_id, 0, "v", _deadline(market))
    problem = _problem(
        api.client.post(_url(project_id, 0), headers=headers, json=body), 403, "insufficient-scope"
    )
    assert problem["required_scope"] == "updates:relay"
    _problem(api.client.post(_url(project_id, 0), json=body), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commitment", "0x" + "00" * 31),
        ("commitment", "0x" + "zz" * 32),
        ("signature", "0x1234"),
        ("deadline", -1),
        ("nonce", -1),
        ("trainer", "not an address"),
    ],
)
def test_malformed_bodies_are_422(api, relay, field, value):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, _ = _commit_body(market, forwarder, trainer, trainer.address, project_id, 0, "m", _deadline(market))
    body[field] = value
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 422, "validation-error")
    assert not _committed(market, project_id, trainer.address)


@pytest.mark.parametrize(
    ("field", "value"), [("sha256", "zz" * 32), ("cid", ""), ("cid", "b" * 129), ("salt", "0x12")]
)
def test_malformed_reveals_are_422(api, relay, field, value):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    salt = secrets.token_bytes(32)
    data = market.reveal_call(project_id, 0, _cid("m"), _sha("m"), salt)
    body = dict(
        _signed(forwarder, market, trainer, data, _deadline(market)),
        cid=_cid("m"),
        sha256=_sha("m"),
        salt="0x" + salt.hex(),
    )
    body[field] = value
    _problem(
        api.client.post(_url(project_id, 0, "reveal"), headers=headers, json=body), 422, "validation-error"
    )


def test_a_zero_commitment_is_400(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    zero = bytes(32)
    body = _signed(forwarder, market, trainer, market.commit_call(project_id, 0, zero), _deadline(market))
    body["commitment"] = "0x" + zero.hex()
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 400, "bad-request")


def test_no_relayer_is_503(api, relay):
    market, forwarder, project_id, [(trainer, headers), _] = relay
    body, _ = _commit_body(market, forwarder, trainer, trainer.address, project_id, 0, "n", _deadline(market))
    api.services.relayer.set(
        Missing("relayer", "no relayer key configured (TRUSTMARKET_API_RELAYER_KEYSTORE)")
    )
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 503, "relayer-unavailable")
    assert not _committed(market, project_id, trainer.address)
