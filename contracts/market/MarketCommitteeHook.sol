// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundAttestor} from "../interfaces/IRoundAttestor.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketCommitteeHook: the market's calls into its verifier committee
/// @notice A market may trust one verifier committee, fixed at deployment: finalization pins the committee
/// snapshot that may attest the round, and the other modules ask whether a round is attested. A committee that
/// misbehaves (reverts, burns its gas, answers malformed data) only takes the market back to the
/// challenge-window rule: every call is bounded by COMMITTEE_CALL_GAS and its failure read as "not attested".
abstract contract MarketCommitteeHook is MarketBase {
    /// @notice Gas each call into the committee may use (VerifierCommittee needs about 33k to pin a snapshot
    /// and 10k to answer `isAttested`), so a misbehaving committee can never take a caller's whole budget.
    uint256 public constant COMMITTEE_CALL_GAS = 100_000;
    /// @notice What must be left before a committee call: COMMITTEE_CALL_GAS plus the 1/64 that EIP-150 keeps
    /// back plus the call's own overhead, so that the committee gets all of COMMITTEE_CALL_GAS.
    uint256 public constant COMMITTEE_GAS_RESERVE = COMMITTEE_CALL_GAS + COMMITTEE_CALL_GAS / 63 + 10_000;

    /// @notice The verifier committee whose quorum attestations make rounds final before their challenge window
    /// ends (see {VerifierCommittee}); zero when this market has none. Set once: it is trusted like the code.
    IRoundAttestor public immutable committee;

    /// @param committee_ A contract implementing {IRoundAttestor}, or address(0) for a market without a committee
    /// (then rounds become final only when their challenge window ends).
    constructor(address committee_) {
        // A high-level call to an address without code reverts before `try` can catch it.
        if (committee_ != address(0) && committee_.code.length == 0) revert InvalidParameter("committee");
        committee = IRoundAttestor(committee_);
    }

    /// @inheritdoc ITrainingMarket
    function isRoundAttested(uint256 projectId, uint16 round) external view returns (bool) {
        _existingProject(projectId);
        return _isAttested(projectId, round);
    }

    /// @inheritdoc MarketBase
    /// @dev Fixes the committee snapshot of the round just finalized, so nobody can join the committee between
    /// finalization and the first attestation. Finalization must not depend on the committee: a pin that reverts
    /// (or runs out of its COMMITTEE_CALL_GAS) is reported and skipped, and VerifierCommittee then pins at the
    /// first attestation instead. The reserve check comes first so that a caller cannot make the pin fail on
    /// purpose by sending just too little gas.
    function _pinSnapshot(uint256 projectId, uint16 round) internal override {
        if (address(committee) == address(0)) return;
        _checkCommitteeGas();
        // A low-level call: the epoch it returns is not needed, and decoding a malformed answer would revert here.
        (bool ok,) = address(committee).call{gas: COMMITTEE_CALL_GAS}(
            abi.encodeCall(IRoundAttestor.pinSnapshot, (address(this), projectId, round))
        );
        if (!ok) emit CommitteePinFailed(projectId, round);
    }

    /// @inheritdoc MarketBase
    /// @dev Anything but a well-formed `true` (a revert, running out of COMMITTEE_CALL_GAS, short or odd return
    /// data) reads as "not attested". The reserve check keeps a caller from starving the query to pass an
    /// attested round off as unattested (e.g. to challenge it).
    function _isAttested(uint256 projectId, uint16 round) internal view override returns (bool) {
        if (address(committee) == address(0)) return false;
        _checkCommitteeGas();
        (bool ok, bytes memory answer) = address(committee).staticcall{gas: COMMITTEE_CALL_GAS}(
            abi.encodeCall(IRoundAttestor.isAttested, (address(this), projectId, round))
        );
        return ok && answer.length == 32 && abi.decode(answer, (uint256)) == 1;
    }

    function _checkCommitteeGas() private view {
        uint256 left = gasleft();
        if (left < COMMITTEE_GAS_RESERVE) revert CommitteeGasTooLow(left, COMMITTEE_GAS_RESERVE);
    }
}
