// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketDisputes: challenging a finalized round before the arbiter
/// @notice Within challengeWindow of its finalization, anyone may dispute a round with the project's bond, whether
/// or not the verifier committee attested it; the arbiter upholds (the round is reversed, the project cancelled and
/// the committee members who attested the overturned result slashed) or rejects (the bond is burned); an arbiter
/// silent for ARBITRATION_PERIOD lets the challenge lapse, and the challenger forfeits LAPSE_BURN_BPS of its bond,
/// so a freeze of the payouts is never free. An open challenge freezes every payout.
abstract contract MarketDisputes is MarketBase {
    using Address for address payable;

    /// @notice The part of the bond (basis points) a challenger forfeits when its challenge lapses.
    uint16 public constant LAPSE_BURN_BPS = 5_000;

    /// @inheritdoc ITrainingMarket
    function challenge(uint256 projectId, uint16 round) external payable nonReentrant {
        Project storage p = _existingProject(projectId);
        if (p.challengeWindow == 0) revert ChallengesDisabled(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.finalizedAt == 0) revert RoundNotFinalized(projectId, round);
        if (rd.challenge != ChallengeState.None) revert AlreadyChallenged(projectId, round);
        uint64 closesAt = rd.finalizedAt + p.challengeWindow;
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(projectId, round, closesAt);
        if (msg.value != p.challengeBond) revert WrongBond(msg.value, p.challengeBond);
        address challenger = _msgSender();
        p.escrow = _toAmount(uint256(p.escrow) + msg.value);
        p.openChallenges += 1;
        rd.challenge = ChallengeState.Open;
        rd.challenger = challenger;
        rd.challengedAt = uint64(block.timestamp);
        emit ChallengeOpened(projectId, round, challenger, uint96(msg.value));
    }

    /// @inheritdoc ITrainingMarket
    /// @dev Upheld: the round's allocations are reversed, the project is cancelled by the liveness rule (if not
    /// already), the bond is owed back to the challenger and, last, the committee slashes whoever attested the
    /// overturned result. Rejected: the bond is burned (not paid to anyone, so neither the arbiter's friends nor
    /// the aggregator gain by a rejection).
    function resolveChallenge(uint256 projectId, uint16 round, bool upheld) external nonReentrant {
        Project storage p = _existingProject(projectId);
        address sender = _msgSender();
        if (sender != p.arbiter) revert NotArbiter(projectId, sender);
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
            _slashAttesters(projectId, round);
        } else {
            rd.challenge = ChallengeState.Rejected;
            p.escrow -= bond;
            emit Burned(projectId, rd.challenger, bond);
            BURN_ADDRESS.sendValue(bond);
        }
    }

    /// @inheritdoc ITrainingMarket
    /// @dev The round stands. The challenger forfeits LAPSE_BURN_BPS of the bond (burned) and is owed the rest:
    /// an absent arbiter must not freeze the escrow forever, and freezing it must cost whoever asked for it.
    function expireChallenge(uint256 projectId, uint16 round) external nonReentrant {
        Project storage p = _existingProject(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.challenge != ChallengeState.Open) revert NoOpenChallenge(projectId, round);
        uint64 until = rd.challengedAt + ARBITRATION_PERIOD;
        if (block.timestamp <= until) revert ArbitrationPending(projectId, round, until);
        p.openChallenges -= 1;
        rd.challenge = ChallengeState.Lapsed;
        uint96 bond = p.challengeBond;
        uint96 burned = uint96((uint256(bond) * LAPSE_BURN_BPS) / BPS);
        _bondRefunds[projectId][rd.challenger] += bond - burned;
        p.escrow -= burned;
        emit ChallengeLapsed(projectId, round, burned);
        if (burned != 0) {
            emit Burned(projectId, rd.challenger, burned);
            BURN_ADDRESS.sendValue(burned);
        }
    }

    function _reverse(uint256 projectId, Project storage p, Round storage rd, uint16 round) private {
        uint96 roundPool = _roundPool(p, round);
        // The round's pool becomes unallocated again (the owner's dust from it goes back with it), and its flagged
        // revealers' work counts again: the flags fall with the result that set them.
        p.allocatedPool -= roundPool;
        p.ownerRefund -= roundPool - rd.allocated;
        p.workWeight += rd.flaggedStake;
        _reversed[projectId].push(round);
        emit RoundReversed(projectId, round, rd.allocated);
    }
}
