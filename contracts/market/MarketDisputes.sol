// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketDisputes: challenging a finalized round before the arbiter
/// @notice Within challengeWindow of its finalization, anyone may dispute a round with the project's bond; the
/// arbiter upholds (the round is reversed and the project cancelled) or rejects (the bond is burned); an arbiter
/// silent for ARBITRATION_PERIOD lets the challenge lapse. An open challenge freezes every payout.
abstract contract MarketDisputes is MarketBase {
    using Address for address payable;

    /// @notice How long the arbiter has to rule on a challenge before anyone may let it lapse.
    uint64 public constant ARBITRATION_PERIOD = 7 days;

    /// @inheritdoc ITrainingMarket
    /// @dev A round the committee attested cannot be challenged (RoundAlreadyAttested): a quorum of verifiers has
    /// vouched for it.
    function challenge(uint256 projectId, uint16 round) external payable nonReentrant {
        Project storage p = _existingProject(projectId);
        if (p.challengeWindow == 0) revert ChallengesDisabled(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.finalizedAt == 0) revert RoundNotFinalized(projectId, round);
        if (rd.challenge != ChallengeState.None) revert AlreadyChallenged(projectId, round);
        uint64 closesAt = rd.finalizedAt + p.challengeWindow;
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(projectId, round, closesAt);
        if (msg.value != p.challengeBond) revert WrongBond(msg.value, p.challengeBond);
        if (_isAttested(projectId, round)) revert RoundAlreadyAttested(projectId, round);
        p.escrow = _toAmount(uint256(p.escrow) + msg.value);
        p.openChallenges += 1;
        rd.challenge = ChallengeState.Open;
        rd.challenger = msg.sender;
        rd.challengedAt = uint64(block.timestamp);
        emit ChallengeOpened(projectId, round, msg.sender, uint96(msg.value));
    }

    /// @inheritdoc ITrainingMarket
    /// @dev Upheld: the round's allocations are reversed, the project is cancelled by the liveness rule (if not
    /// already) and the bond is owed back to the challenger. Rejected: the bond is burned (not paid to anyone, so
    /// neither the arbiter's friends nor the aggregator gain by a rejection).
    function resolveChallenge(uint256 projectId, uint16 round, bool upheld) external nonReentrant {
        Project storage p = _existingProject(projectId);
        if (msg.sender != p.arbiter) revert NotArbiter(projectId, msg.sender);
        Round storage rd = _rounds[projectId][round];
        if (rd.challenge != ChallengeState.Open) revert NoOpenChallenge(projectId, round);
        p.openChallenges -= 1;
        uint96 bond = p.challengeBond;
        emit ChallengeResolved(projectId, round, upheld);
        if (upheld) {
            rd.challenge = ChallengeState.Upheld;
            _bondRefunds[projectId][rd.challenger] += bond;
            _reverse(projectId, p, rd, round);
            if (p.status != Status.Cancelled) _cancel(projectId, p, CancelReason.ChallengeUpheld);
        } else {
            rd.challenge = ChallengeState.Rejected;
            p.escrow -= bond;
            emit Burned(projectId, rd.challenger, bond);
            BURN_ADDRESS.sendValue(bond);
        }
    }

    /// @inheritdoc ITrainingMarket
    /// @dev The round stands and the bond is owed back to the challenger (an absent arbiter must not freeze the
    /// escrow forever).
    function expireChallenge(uint256 projectId, uint16 round) external nonReentrant {
        Project storage p = _existingProject(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.challenge != ChallengeState.Open) revert NoOpenChallenge(projectId, round);
        uint64 until = rd.challengedAt + ARBITRATION_PERIOD;
        if (block.timestamp <= until) revert ArbitrationPending(projectId, round, until);
        p.openChallenges -= 1;
        rd.challenge = ChallengeState.Lapsed;
        _bondRefunds[projectId][rd.challenger] += p.challengeBond;
        emit ChallengeLapsed(projectId, round);
    }

    /// @inheritdoc ITrainingMarket
    function reversedRounds(uint256 projectId) external view returns (uint16[] memory) {
        _existingProject(projectId);
        return _reversed[projectId];
    }

    /// @inheritdoc ITrainingMarket
    function isRoundFinal(uint256 projectId, uint16 round) external view returns (bool) {
        Project storage p = _existingProject(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.finalizedAt == 0) return false;
        if (rd.challenge == ChallengeState.Open || rd.challenge == ChallengeState.Upheld) return false;
        return block.timestamp > uint256(rd.finalizedAt) + p.challengeWindow || _isAttested(projectId, round);
    }

    function _reverse(uint256 projectId, Project storage p, Round storage rd, uint16 round) private {
        uint96 roundPool = _roundPool(p, round);
        // The round's pool becomes unallocated again; the owner's dust from it goes back with it.
        p.allocatedPool -= roundPool;
        p.ownerRefund -= roundPool - rd.allocated;
        p.totalFlags -= rd.flaggedCount;
        _reversed[projectId].push(round);
        emit RoundReversed(projectId, round, rd.allocated);
    }
}
