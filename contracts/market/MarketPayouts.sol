// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketPayouts: pull payments once a project has ended
/// @notice `claim` pays an account everything the project owes it, in every role it holds, in O(1): shares were
/// credited when rounds were finalized, and the liveness split of a cancelled project is a division.
abstract contract MarketPayouts is MarketBase {
    using Address for address payable;

    /// @inheritdoc ITrainingMarket
    /// @dev As a trainer: reward + stake - slash (the slash is burned); as the owner: the refund; as a
    /// challenger: bonds owed back. Open once the project is completed or cancelled, no challenge is open and
    /// every round that still stands is final: attested by the committee, or past its challenge window.
    function claim(uint256 projectId) external nonReentrant returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(projectId, p)) revert ClaimsNotOpen(projectId);
        Trainer storage t = _trainers[projectId][msg.sender];
        bool asTrainer = t.registered && !t.claimed;
        bool asOwner = msg.sender == p.owner && !p.ownerClaimed;
        uint96 bond = _bondRefunds[projectId][msg.sender];
        if (!asTrainer && !asOwner && bond == 0) {
            if (t.registered || msg.sender == p.owner) revert AlreadyClaimed(projectId, msg.sender);
            revert NothingToClaim(projectId, msg.sender);
        }
        uint256 slashed;
        if (asTrainer) {
            (amount, slashed) = _trainerPayout(projectId, p, t, msg.sender);
            t.claimed = true;
        }
        if (asOwner) {
            amount += _ownerPayout(p);
            p.ownerClaimed = true;
        }
        if (bond != 0) {
            amount += bond;
            _bondRefunds[projectId][msg.sender] = 0;
        }
        // Effects before interactions; an underflow here would mean paying out more than the project holds.
        p.escrow -= uint96(amount + slashed);
        emit Claimed(projectId, msg.sender, amount, slashed);
        if (slashed != 0) {
            emit Burned(projectId, msg.sender, slashed);
            BURN_ADDRESS.sendValue(slashed);
        }
        if (amount != 0) payable(msg.sender).sendValue(amount);
    }

    /// @inheritdoc ITrainingMarket
    function claimable(uint256 projectId, address account) external view returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(projectId, p)) return 0;
        Trainer storage t = _trainers[projectId][account];
        if (t.registered && !t.claimed) (amount,) = _trainerPayout(projectId, p, t, account);
        if (account == p.owner && !p.ownerClaimed) amount += _ownerPayout(p);
        amount += _bondRefunds[projectId][account];
    }

    /// @inheritdoc ITrainingMarket
    function claimsOpen(uint256 projectId) external view returns (bool) {
        return _claimsOpen(projectId, _existingProject(projectId));
    }

    /// @dev A trainer's reward (less reversed rounds, plus its liveness share if cancelled) + stake - slash.
    function _trainerPayout(uint256 projectId, Project storage p, Trainer storage t, address account)
        private
        view
        returns (uint256 amount, uint256 slashed)
    {
        uint256 reward = t.reward;
        uint256 flags = t.flags;
        // At most one entry per upheld challenge, and an upheld challenge cancels the project.
        uint16[] storage reversed = _reversed[projectId];
        for (uint256 i; i < reversed.length; ++i) {
            Submission storage s = _submissions[projectId][reversed[i]][account];
            reward -= s.share;
            if (s.flagged) flags -= 1;
        }
        if (p.status == Status.Cancelled) {
            (uint256 perWork,) = _livenessSplit(p);
            reward += perWork * (t.submissions - flags);
        }
        if (p.slashAfterFlags != 0 && flags >= p.slashAfterFlags) slashed = (uint256(t.stake) * p.slashBps) / BPS;
        amount = reward + t.stake - slashed;
    }

    function _ownerPayout(Project storage p) private view returns (uint256 amount) {
        amount = p.ownerRefund;
        if (p.status == Status.Cancelled) {
            (, uint256 remainder) = _livenessSplit(p);
            amount += remainder;
        }
    }

    /// @dev The unallocated pool split per unit of unflagged submitted work (floor), and what is left for the
    /// owner. Exact: perWork * work + remainder == unallocated, so the escrow drains to zero.
    function _livenessSplit(Project storage p) private view returns (uint256 perWork, uint256 remainder) {
        uint256 unallocated = p.pool - p.allocatedPool;
        uint256 work = p.totalSubmissions - p.totalFlags;
        if (work != 0) perWork = unallocated / work;
        remainder = unallocated - perWork * work;
    }

    /// @dev Completed or cancelled, no open challenge, and every standing round final. Rounds are finalized in
    /// order, so their windows end in order: once the last one's has passed, all have (no committee call), and
    /// otherwise only the rounds still inside their window need the committee, newest first.
    function _claimsOpen(uint256 projectId, Project storage p) private view returns (bool) {
        if (p.status != Status.Completed && p.status != Status.Cancelled) return false;
        if (p.openChallenges != 0) return false;
        uint256 window = p.challengeWindow;
        if (p.lastFinalizedAt == 0 || block.timestamp > p.lastFinalizedAt + window) return true;
        // Rounds 0..currentRound-1 are the finalized ones (in a cancelled project currentRound is still open).
        for (uint16 round = p.currentRound; round != 0;) {
            --round;
            Round storage rd = _rounds[projectId][round];
            if (block.timestamp > rd.finalizedAt + window) break;
            // A reversed round no longer stands; its pool is paid by the liveness rule.
            if (rd.challenge == ChallengeState.Upheld) continue;
            if (!_isAttested(projectId, round)) return false;
        }
        return true;
    }
}
