"""The gasless submission path: a trainer signs the EIP-712 payload the API hands out and the service's relayer
sends it to TrainingMarket.submitUpdateFor, against a real anvil. Every refusal is problem+json with its status."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from backend.api.services import Missing
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
    signed in. Returns (market, project id, [(account, headers), ...])."""
    market = TrainingMarket(chain_client)
    project_id = market.create_project(
        dev_accounts[10],
        ProjectParams(
            initial_model_cid=_cid("model"),
            initial_model_sha256=_sha("model"),
            config_cid=_cid("config"),
            config_sha256=_sha("config"),
            rounds=2,
            round_duration=3600,
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
    return market, project_id, trainers


def _url(project_id: int, round_: int) -> str:
    return f"/v1/projects/{project_id}/rounds/{round_}/submissions:relay"


def _body(market, signer, trainer: str, project_id: int, round_: int, label: str, deadline: int) -> dict:
    """A relay body for `trainer`'s submission of `label`, signed by `signer` (the trainer, or a forger)."""
    payload = market.submission_typed_data(trainer, project_id, round_, _cid(label), _sha(label), deadline)
    signature = Account.sign_typed_data(signer.key, full_message=payload).signature.to_0x_hex()
    return {"cid": _cid(label), "sha256": _sha(label), "deadline": deadline, "signature": signature}


def _deadline(market, seconds: int = 600) -> int:
    return market.client.timestamp() + seconds


def _problem(reply, status: int, kind: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["type"] == f"/problems/{kind}", reply.text
    return reply.json()


def test_relayed_submission_lands_as_the_callers(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    deadline = _deadline(market)
    payload = api.client.get(
        _url(project_id, 0),
        headers=headers,
        params={"cid": _cid("u"), "sha256": _sha("u"), "deadline": deadline},
    ).json()
    assert payload["primaryType"] == "SubmitUpdate"
    assert payload["domain"]["name"] == "trustmarket TrainingMarket"
    assert payload["domain"]["verifyingContract"] == market.address
    assert payload["message"]["trainer"] == trainer.address
    assert (payload["message"]["nonce"], payload["message"]["deadline"]) == (0, deadline)
    signature = Account.sign_typed_data(trainer.key, full_message=payload).signature.to_0x_hex()
    before = market.client.w3.eth.get_balance(trainer.address)
    body = {"cid": _cid("u"), "sha256": _sha("u"), "deadline": deadline, "signature": signature}
    reply = api.client.post(_url(project_id, 0), headers=headers, json=body)
    assert reply.status_code == 200, reply.text
    relayed = reply.json()
    assert (relayed["trainer"], relayed["cid"], relayed["sha256"]) == (trainer.address, _cid("u"), _sha("u"))
    [submission] = market.submissions(project_id, 0)
    assert (submission.trainer, submission.cid, submission.sha256) == (trainer.address, _cid("u"), _sha("u"))
    assert market.has_submitted(project_id, 0, trainer.address)
    assert market.submission_nonce(trainer.address) == 1
    assert market.client.w3.eth.get_balance(trainer.address) == before  # the relayer paid the gas


def test_replay_is_409(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    body = _body(market, trainer, trainer.address, project_id, 0, "once", _deadline(market))
    assert api.client.post(_url(project_id, 0), headers=headers, json=body).status_code == 200
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 409, "already-submitted")
    assert market.submission_nonce(trainer.address) == 1


def test_a_signature_by_another_key_is_400(api, relay):
    market, project_id, [(trainer, headers), (other, _)] = relay
    forged = _body(market, other, trainer.address, project_id, 0, "x", _deadline(market))
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=forged), 400, "invalid-signature")
    # A body signed over other fields than the ones sent (another CID) fails the same way.
    signed = _body(market, trainer, trainer.address, project_id, 0, "x", _deadline(market))
    signed["cid"] = _cid("y")
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=signed), 400, "invalid-signature")
    assert not market.has_submitted(project_id, 0, trainer.address)


def test_another_trainers_signature_is_never_relayed_as_theirs(api, relay):
    market, project_id, [(trainer, _), (other, other_headers)] = relay
    theirs = _body(market, trainer, trainer.address, project_id, 0, "t", _deadline(market))
    named = dict(theirs, trainer=trainer.address)
    _problem(api.client.post(_url(project_id, 0), headers=other_headers, json=named), 403, "not-the-trainer")
    # Without naming the trainer, the service relays for the caller only, so the signature does not match.
    _problem(
        api.client.post(_url(project_id, 0), headers=other_headers, json=theirs), 400, "invalid-signature"
    )
    assert not market.has_submitted(project_id, 0, trainer.address)
    assert not market.has_submitted(project_id, 0, other.address)


def test_expired_deadline_is_400(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    body = _body(market, trainer, trainer.address, project_id, 0, "late", _deadline(market, -1))
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 400, "signature-expired")


def test_wrong_round_is_409_and_unknown_ids_are_404(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    ahead = _body(market, trainer, trainer.address, project_id, 1, "r1", _deadline(market))
    _problem(api.client.post(_url(project_id, 1), headers=headers, json=ahead), 409, "wrong-round")
    beyond = _body(market, trainer, trainer.address, project_id, 5, "r5", _deadline(market))
    _problem(api.client.post(_url(project_id, 5), headers=headers, json=beyond), 404, "unknown-round")
    unknown = _body(market, trainer, trainer.address, 99, 0, "p", _deadline(market))
    _problem(api.client.post(_url(99, 0), headers=headers, json=unknown), 404, "unknown-project")
    params = {"cid": _cid("p"), "sha256": _sha("p")}
    _problem(api.client.get(_url(99, 0), headers=headers, params=params), 404, "unknown-project")


def test_unregistered_caller_is_409(api, relay, dev_accounts):
    market, project_id, _ = relay
    outsider = dev_accounts[16]
    api.grant(outsider, 2)
    api.accept_terms(outsider)
    headers = api.login(outsider)
    body = _body(market, outsider, outsider.address, project_id, 0, "o", _deadline(market))
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 409, "not-registered")
    assert market.submission_nonce(outsider.address) == 0


def test_explorer_tier_lacks_the_scope(api, relay):
    market, project_id, _ = relay
    viewer, headers = api.member("relay-viewer", tier=1)
    body = _body(market, viewer, viewer.address, project_id, 0, "v", _deadline(market))
    problem = _problem(
        api.client.post(_url(project_id, 0), headers=headers, json=body), 403, "insufficient-scope"
    )
    assert problem["required_scope"] == "updates:relay"
    _problem(api.client.post(_url(project_id, 0), json=body), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "00" * 31),
        ("sha256", "zz" * 32),
        ("signature", "0x1234"),
        ("deadline", -1),
        ("cid", ""),
        ("cid", "b" * 129),
        ("trainer", "not an address"),
    ],
)
def test_malformed_bodies_are_422(api, relay, field, value):
    market, project_id, [(trainer, headers), _] = relay
    body = dict(
        _body(market, trainer, trainer.address, project_id, 0, "m", _deadline(market)), **{field: value}
    )
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 422, "validation-error")
    assert not market.has_submitted(project_id, 0, trainer.address)


def test_zero_sha256_is_400(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    deadline = _deadline(market)
    payload = market.submission_typed_data(trainer.address, project_id, 0, _cid("z"), "00" * 32, deadline)
    signature = Account.sign_typed_data(trainer.key, full_message=payload).signature.to_0x_hex()
    body = {"cid": _cid("z"), "sha256": "00" * 32, "deadline": deadline, "signature": signature}
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 400, "bad-request")


def test_no_relayer_is_503(api, relay):
    market, project_id, [(trainer, headers), _] = relay
    body = _body(market, trainer, trainer.address, project_id, 0, "n", _deadline(market))
    api.services.relayer.set(
        Missing("relayer", "no relayer key configured (TRUSTMARKET_API_RELAYER_KEYSTORE)")
    )
    _problem(api.client.post(_url(project_id, 0), headers=headers, json=body), 503, "relayer-unavailable")
    assert not market.has_submitted(project_id, 0, trainer.address)
