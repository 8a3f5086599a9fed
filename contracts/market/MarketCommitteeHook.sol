// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundAttestor} from "../interfaces/IRoundAttestor.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketCommitteeHook: the market's calls into its verifier committee
/// @notice A market may trust one verifier committee, fixed at deployment. Finalization pins the committee
/// snapshot that may attest the round; an upheld challenge has the committee slash the members who attested the
/// overturned result (the committee's own `isAttested` reports attestations). No payout waits for or depends on it:
/// an attested round stays challengeable until its window ends. A committee that misbehaves (reverts, burns its
/// gas, answers malformed data) changes nothing but its own records: every call is bounded and may fail.
abstract contract MarketCommitteeHook is MarketBase {
    /// @notice Gas a pin or an attestation query may use (VerifierCommittee needs about 33k to pin a snapshot and
    /// 10k to answer `isAttested`), so a misbehaving committee can never take a caller's whole budget.
    uint256 public constant COMMITTEE_CALL_GAS = 100_000;
    /// @notice Gas a slash may use: VerifierCommittee burns every attester's stake and rewrites its committee
    /// once (about 3M gas for 128 members in the worst case).
    uint256 public constant COMMITTEE_SLASH_GAS = 4_000_000;

    /// @notice The verifier committee whose members attest this market's rounds and are slashed when a challenge
    /// overturns what they attested (see {VerifierCommittee}); zero when this market has none. Set once: it is
    /// trusted like the code.
    IRoundAttestor public immutable committee;

    /// @param committee_ A contract implementing {IRoundAttestor}, or address(0) for a market without a committee.
    constructor(address committee_) {
        // A high-level call to an address without code reverts before `try` can catch it.
        if (committee_ != address(0) && committee_.code.length == 0) revert InvalidParameter(Parameter.Committee);
        committee = IRoundAttestor(committee_);
    }

    /// @inheritdoc MarketBase
    /// @dev Fixes the committee snapshot of the round just finalized, so nobody can join the committee between
    /// finalization and the first attestation. A pin that fails is reported and skipped (VerifierCommittee then
    /// pins at the first attestation). A low-level call: the epoch it returns is not needed, and decoding a
    /// malformed answer would revert here.
    function _pinSnapshot(uint256 projectId, uint16 round) internal override {
        if (address(committee) == address(0)) return;
        _checkCommitteeGas(COMMITTEE_CALL_GAS);
        (bool ok,) = address(committee).call{gas: COMMITTEE_CALL_GAS}(
            abi.encodeCall(IRoundAttestor.pinSnapshot, (address(this), projectId, round))
        );
        if (!ok) emit CommitteePinFailed(projectId, round);
    }

    /// @inheritdoc MarketBase
    /// @dev The ruling stands whatever the committee does: a slash that fails is reported and skipped.
    function _slashAttesters(uint256 projectId, uint16 round) internal override {
        if (address(committee) == address(0)) return;
        _checkCommitteeGas(COMMITTEE_SLASH_GAS);
        (bool ok,) = address(committee).call{gas: COMMITTEE_SLASH_GAS}(
            abi.encodeCall(IRoundAttestor.slashAttesters, (projectId, round))
        );
        if (!ok) emit CommitteeSlashFailed(projectId, round);
    }

    /// @inheritdoc MarketBase
    /// @dev A committee that cannot answer gets 0, which refuses projects with challenges: their attesters could
    /// not be shown to stay slashable.
    function _committeeExitDelay() internal view override returns (uint64) {
        if (address(committee) == address(0)) return type(uint64).max;
        (bool ok, bytes memory answer) = address(committee).staticcall{gas: COMMITTEE_CALL_GAS}(
            abi.encodeCall(IRoundAttestor.exitDelay, ())
        );
        if (!ok || answer.length != 32) return 0;
        uint256 delay = abi.decode(answer, (uint256));
        return delay > type(uint64).max ? 0 : uint64(delay);
    }

    /// @dev What must be left before a committee call: its allowance plus the 1/64 that EIP-150 keeps back plus the
    /// call's own overhead, so a caller cannot make the call fail on purpose by sending just too little gas (to
    /// skip a pin or a slash, or to pass an attested round off as unattested).
    function _checkCommitteeGas(uint256 allowance) private view {
        uint256 needed = allowance + allowance / 63 + 10_000;
        uint256 left = gasleft();
        if (left < needed) revert CommitteeGasTooLow(left, needed);
    }
}
