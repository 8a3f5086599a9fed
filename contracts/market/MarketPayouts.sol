// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketPayouts: pull payments once a project has ended
/// @notice `claim` pays an account everything the project owes it, in every role it holds, in O(1) in the number
/// of rounds: shares were credited when rounds were finalized, and the liveness split of a cancelled project is
/// one multiplication and one division over what is still unclaimed, so the last claimer takes the rounding dust
/// and not a wei stays behind.
abstract contract MarketPayouts is MarketBase {
    using Address for address payable;

    /// @inheritdoc ITrainingMarket
    /// @dev As a trainer: reward + stake - slash (the slash is burned); as the owner: the refund; as a
    /// challenger: bonds owed back. Open once the project is completed or cancelled, no challenge is open and the
    /// last finalized round's challenge window has passed (rounds finalize in order, so every window has).
    function claim(uint256 projectId) external nonReentrant returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(p)) revert ClaimsNotOpen(projectId);
        address account = _msgSender();
        Trainer storage t = _trainers[projectId][account];
        bool asTrainer = t.registered && !t.claimed;
        bool asOwner = account == p.owner && !p.ownerClaimed;
        uint96 bond = _bondRefunds[projectId][account];
        if (!asTrainer && !asOwner && bond == 0) {
            if (t.registered || account == p.owner) revert AlreadyClaimed(projectId, account);
            revert NothingToClaim(projectId, account);
        }
        uint256 slashed;
        if (asTrainer) {
            uint256 liveness;
            uint256 work;
            (amount, slashed, liveness, work) = _trainerPayout(projectId, p, t, account);
            t.claimed = true;
            if (work != 0) {
                // The split's divisor and dividend shrink by what this claim took (see _livenessShare).
                p.allocatedPool += SafeCast.toUint96(liveness);
                if (p.currentRound < p.rounds && _entries[projectId][p.currentRound][account] == REVEALED) {
                    p.roundRevealedStake -= t.stake;
                    work -= 1;
                }
                p.workWeight -= SafeCast.toUint128(uint256(t.stake) * work);
            }
        }
        if (asOwner) {
            amount += _ownerPayout(p);
            p.ownerClaimed = true;
        }
        if (bond != 0) {
            amount += bond;
            _bondRefunds[projectId][account] = 0;
        }
        // Effects before interactions; SafeCast and the checked subtraction refuse to pay out more than the
        // project holds.
        p.escrow -= SafeCast.toUint96(amount + slashed);
        emit Claimed(projectId, account, amount, slashed);
        if (slashed != 0) {
            emit Burned(projectId, account, slashed);
            BURN_ADDRESS.sendValue(slashed);
        }
        if (amount != 0) payable(account).sendValue(amount);
    }

    /// @inheritdoc ITrainingMarket
    function claimable(uint256 projectId, address account) external view returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(p)) return 0;
        Trainer storage t = _trainers[projectId][account];
        if (t.registered && !t.claimed) (amount,,,) = _trainerPayout(projectId, p, t, account);
        if (account == p.owner && !p.ownerClaimed) amount += _ownerPayout(p);
        amount += _bondRefunds[projectId][account];
    }

    /// @dev A trainer's reward (less reversed rounds, plus its liveness share if cancelled) + stake - slash; and
    /// the liveness share and the revealed, unflagged rounds it was weighed by.
    function _trainerPayout(uint256 projectId, Project storage p, Trainer storage t, address account)
        private
        view
        returns (uint256 amount, uint256 slashed, uint256 liveness, uint256 work)
    {
        uint256 reward = t.reward;
        uint256 flags = t.flags;
        // At most one entry per upheld challenge, and an upheld challenge cancels the project.
        uint16[] storage reversed = _reversed[projectId];
        for (uint256 i; i < reversed.length; ++i) {
            uint256 entry = _entries[projectId][reversed[i]][account];
            if (entry >= SEALED_FLOOR || entry == 0) continue;
            reward -= entry >> 2;
            if (entry & 2 != 0) flags -= 1;
        }
        if (p.status == Status.Cancelled) {
            (liveness, work) = _livenessShare(projectId, p, t, account, flags);
            reward += liveness;
        }
        if (p.slashAfterFlags != 0 && flags >= p.slashAfterFlags) slashed = (uint256(t.stake) * p.slashBps) / BPS;
        amount = reward + t.stake - slashed;
    }

    /// @dev The trainer's part of the unallocated pool: pro rata to stake times its revealed, unflagged rounds
    /// (the finalized ones and a reveal in the open round). The divisor is the same sum over every trainer who
    /// has not claimed yet, kept on chain (`workWeight` + `roundRevealedStake`), and the dividend the pool not yet
    /// paid out: each claim takes the floor of its part and removes its weight and share from both, so the shares
    /// never add up to more than the pool and the last claimer's is exactly what is left.
    function _livenessShare(uint256 projectId, Project storage p, Trainer storage t, address account, uint256 flags)
        private
        view
        returns (uint256 share, uint256 work)
    {
        uint256 total = uint256(p.workWeight) + p.roundRevealedStake;
        if (total == 0) return (0, 0);
        work = t.submissions - flags;
        if (p.currentRound < p.rounds && _entries[projectId][p.currentRound][account] == REVEALED) work += 1;
        // unallocated < 2^96, stake < 2^96, work < 2^16: the product fits in 256 bits.
        share = ((p.pool - p.allocatedPool) * uint256(t.stake) * work) / total;
    }

    function _ownerPayout(Project storage p) private view returns (uint256 amount) {
        amount = p.ownerRefund;
        // The unallocated pool goes back to the owner only if nobody revealed any unflagged work.
        if (p.status == Status.Cancelled && p.workWeight == 0 && p.roundRevealedStake == 0) {
            amount += p.pool - p.allocatedPool;
        }
    }

    /// @dev Completed or cancelled, no open challenge, and the last finalized round's challenge window over. No
    /// committee call and no loop: a claim costs the same whatever the number of rounds.
    function _claimsOpen(Project storage p) private view returns (bool) {
        if (p.status != Status.Completed && p.status != Status.Cancelled) return false;
        if (p.openChallenges != 0) return false;
        return p.lastFinalizedAt == 0 || block.timestamp > uint256(p.lastFinalizedAt) + p.challengeWindow;
    }
}
