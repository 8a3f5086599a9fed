"""Typed facade over `VerifierCommittee.sol`: admitted, staked BLS verifiers who attest to training rounds' result
digests, and lose their stake when a challenge overturns a result they attested.

Membership is by admission (`admit`, by the deployer) and a member's weight in a quorum is its stake capped at
`max_weight`; the market holding MARKET_ROLE (`grant_market`, done by `deploy_contracts`) slashes attesters.

Curve points cross this boundary as plain integer tuples (G1: x, y; G2: x_im, x_re, y_im, y_re); the BLS maths,
signing and aggregation live in the committee service (`backend.committee`). Reverts come back as
`ContractRevert` subclasses named after the Solidity errors (`VerifierCommittee.errors.QuorumNotReached`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from backend.chain.abi import ContractEnum
from backend.chain.client import ChainClient
from backend.chain.errors import ChainError
from backend.chain.facade import ContractFacade

__all__ = [
    "CONTRACT",
    "G1",
    "G2",
    "MARKET_INTERFACE",
    "QUORUM_DENOMINATOR",
    "QUORUM_NUMERATOR",
    "AttestationResult",
    "CommitteeError",
    "EpochInfo",
    "Member",
    "RoundRecord",
    "VerifierCommittee",
    "VerifierInfo",
    "VerifierStatus",
    "deploy_verifier_committee",
]

CONTRACT = "VerifierCommittee"
# The one view the committee needs from a market (TrainingMarket implements it).
MARKET_INTERFACE = "IRoundResultSource"
QUORUM_NUMERATOR, QUORUM_DENOMINATOR = 2, 3  # mirrors of the contract's constants (checked in the tests)

G1 = tuple[int, int]
G2 = tuple[int, int, int, int]


class CommitteeError(ChainError, ValueError):
    """An attestation that cannot be built: mixed rounds, a stale digest, too few valid signatures."""


class VerifierStatus(ContractEnum, solidity="IVerifierCommittee.Status"):
    """IVerifierCommittee.Status: `SLASHED` members attested a result a challenge overturned."""

    NONE = 0
    ACTIVE = 1
    EXITING = 2
    SLASHED = 3


@dataclass(frozen=True)
class VerifierInfo:
    address: str
    stake: int
    withdrawable_at: int
    index: int
    status: VerifierStatus


@dataclass(frozen=True)
class Member:
    """One seat of an epoch's committee; `index` is its bit in signer bitmaps, `weight` its say in a quorum (its
    stake capped at the committee's `max_weight`)."""

    index: int
    address: str
    weight: int
    public_g1: G1


@dataclass(frozen=True)
class EpochInfo:
    epoch: int
    table: str
    size: int
    started_at: int
    total_weight: int


@dataclass(frozen=True)
class RoundRecord:
    """A round result's snapshot epoch (fixed when first pinned), whether it has been attested and by whom (bit i:
    member i of the snapshot), and whether those attesters were slashed."""

    epoch: int
    pinned_at: int
    pinned: bool
    attested: bool
    slashed: bool
    signers: int


@dataclass(frozen=True)
class AttestationResult:
    """What `RoundAttested` recorded."""

    epoch: int
    signer_bitmap: int
    signed_weight: int
    total_weight: int
    block: int
    gas_used: int


class VerifierCommittee(ContractFacade):
    """The deployed VerifierCommittee (or the one at `address`), through a `ChainClient`."""

    contract_name = CONTRACT

    # -- reads -----------------------------------------------------------------------------------------------

    def min_stake(self) -> int:
        return int(self._call("minStake"))

    def max_weight(self) -> int:
        """The most weight one member carries in a quorum, whatever its stake."""
        return int(self._call("maxWeight"))

    def is_admitted(self, account: str) -> bool:
        """Whether `account` holds an unused admission (it may register once)."""
        return bool(self._call("admitted", Web3.to_checksum_address(account)))

    def exit_delay(self) -> int:
        return int(self._call("exitDelay"))

    def attest_window(self) -> int:
        return int(self._call("attestWindow"))

    def current_epoch(self) -> int:
        return int(self._call("currentEpoch"))

    def epoch(self, epoch: int) -> EpochInfo:
        return self._struct(EpochInfo, "epochInfo", self._call("epochInfo", epoch), epoch=epoch)

    def members(self, epoch: int | None = None) -> list[Member]:
        """The committee of `epoch` (default: the current one) in bitmap order."""
        epoch = self.current_epoch() if epoch is None else epoch
        addresses, weights, keys = self._call("committee", epoch)
        return [
            Member(i, a, int(w), (int(k[0]), int(k[1])))
            for i, (a, w, k) in enumerate(zip(addresses, weights, keys, strict=True))
        ]

    def verifier(self, address: str) -> VerifierInfo:
        checksum = Web3.to_checksum_address(address)
        return self._struct(VerifierInfo, "verifiers", self._call("verifiers", checksum), address=checksum)

    def public_key_g2(self, address: str) -> G2:
        x_im, x_re, y_im, y_re = (
            int(v) for v in self._call("publicKeyG2", Web3.to_checksum_address(address))
        )
        return (x_im, x_re, y_im, y_re)

    def market_digest(self, market: str, project_id: int, round_: int) -> bytes:
        """The result digest the market stores for the round (32 zero bytes while it is not finalized)."""
        return bytes(
            self.client.call(
                MARKET_INTERFACE,
                "roundResultDigest",
                project_id,
                round_,
                address=Web3.to_checksum_address(market),
            )
        )

    def round_record(self, market: str, project_id: int, round_: int, digest: bytes) -> RoundRecord:
        value = self._call(
            "roundRecord", Web3.to_checksum_address(market), project_id, round_, _digest32(digest)
        )
        return self._struct(RoundRecord, "roundRecord", value)

    def is_attested(self, market: str, project_id: int, round_: int) -> bool:
        """Whether the result the market stores now for the round has a quorum attestation."""
        return bool(self._call("isAttested", Web3.to_checksum_address(market), project_id, round_))

    # -- writes ----------------------------------------------------------------------------------------------

    def admit(self, admin: LocalAccount, verifier: str) -> TxReceipt:
        """Let `verifier` register once (ADMISSION_ROLE: the deployer)."""
        return self._transact(admin, "admit", Web3.to_checksum_address(verifier))

    def revoke_admission(self, admin: LocalAccount, verifier: str) -> TxReceipt:
        """Withdraw an admission `verifier` has not used."""
        return self._transact(admin, "revokeAdmission", Web3.to_checksum_address(verifier))

    def grant_market(self, admin: LocalAccount, market: str) -> TxReceipt:
        """Give `market` MARKET_ROLE: its upheld challenges slash the attesters of the rounds they overturn."""
        role = bytes(self._call("MARKET_ROLE"))
        return self._transact(admin, "grantRole", role, Web3.to_checksum_address(market))

    def register(
        self, account: LocalAccount, public_g1: G1, public_g2: G2, proof: G1, stake: int
    ) -> VerifierInfo:
        """Lock `stake` wei and join with a BLS key and its proof of possession for this account and committee
        (`backend.committee.attestation.join` makes the proof)."""
        self._transact(account, "register", tuple(public_g1), tuple(public_g2), tuple(proof), value=stake)
        return self.verifier(account.address)

    def request_exit(self, account: LocalAccount) -> int:
        """Leave the committee; returns the time from which the stake can be withdrawn."""
        receipt = self._transact(account, "requestExit")
        return int(self._event(receipt, "ExitRequested")["withdrawableAt"])

    def withdraw(self, account: LocalAccount) -> int:
        """Pull the stake back after the exit delay; returns the amount paid."""
        receipt = self._transact(account, "withdraw")
        return int(self._event(receipt, "StakeWithdrawn")["amount"])

    def pin_snapshot(self, account: LocalAccount, market: str, project_id: int, round_: int) -> int:
        """Fix the round's snapshot epoch now (idempotent); returns it."""
        self._transact(account, "pinSnapshot", Web3.to_checksum_address(market), project_id, round_)
        digest = self.market_digest(market, project_id, round_)
        return self.round_record(market, project_id, round_, digest).epoch

    def attest(
        self,
        account: LocalAccount,
        market: str,
        project_id: int,
        round_: int,
        digest: bytes,
        signer_bitmap: int,
        apk_g2: G2,
        signature: G1,
    ) -> AttestationResult:
        """Send one aggregated attestation; reverts (replay, no quorum, bad signature) raise named errors."""
        receipt = self._transact(
            account,
            "attest",
            Web3.to_checksum_address(market),
            project_id,
            round_,
            _digest32(digest),
            signer_bitmap,
            tuple(apk_g2),
            tuple(signature),
        )
        args = self._event(receipt, "RoundAttested")
        return AttestationResult(
            int(args["epoch"]),
            int(args["signerBitmap"]),
            int(args["signedWeight"]),
            int(args["totalWeight"]),
            int(receipt["blockNumber"]),
            int(receipt["gasUsed"]),
        )


def _digest32(value: bytes) -> bytes:
    digest = bytes(value)
    if len(digest) != 32:
        raise CommitteeError(f"a result digest has 32 bytes, got {len(digest)}")
    return digest


def deploy_verifier_committee(
    client: ChainClient,
    deployer: LocalAccount,
    *,
    min_stake: int = 10**16,
    max_weight: int | None = None,
    exit_delay: int = 14 * 24 * 3600,
) -> VerifierCommittee:
    """Deploy a fresh committee administered by `deployer` (for tests, benchmarks and experiments); the weight cap
    defaults to ten minimum stakes."""
    weight = 10 * min_stake if max_weight is None else max_weight
    receipt = client.deploy(deployer, CONTRACT, deployer.address, min_stake, weight, exit_delay)
    return VerifierCommittee(client, receipt["contractAddress"])
