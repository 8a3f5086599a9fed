// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundResultSource} from "../interfaces/IRoundResultSource.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketRounds: projects, trainers, finalization and the liveness rule
/// @notice An owner escrows a pool (`createProject`); trainers stake (`register`); each round's sealed updates are
/// committed and revealed ({MarketSealing}); the aggregator posts the round's scores (`finalizeRound`), which
/// credits trainers at once; if the aggregator misses a deadline, anyone may `cancel` and the unallocated pool
/// goes to the trainers' revealed, unflagged work, weighted by stake.
abstract contract MarketRounds is MarketBase {
    // ------------------------------------------------------------------ owner

    /// @inheritdoc ITrainingMarket
    /// @dev The owner may be neither the aggregator nor the arbiter (ConflictOfInterest): it would score or judge
    /// its own payout. With a committee, a challenge must be settled before an attester can leave the committee
    /// with its stake (challengeWindow + ARBITRATION_PERIOD <= the committee's exit delay).
    function createProject(ProjectParams calldata p) external payable nonReentrant returns (uint256 projectId) {
        address owner = _msgSender();
        projectId = projectCount + 1;
        _checkParams(p, owner, projectId);
        if (msg.value == 0) revert EmptyPool();
        uint96 pool = _toAmount(msg.value);
        projectCount = projectId;
        Project storage pr = _projects[projectId];
        pr.roundOpenedAt = uint40(block.timestamp);
        pr.roundDuration = p.roundDuration;
        pr.revealWindow = p.revealWindow;
        pr.status = Status.Active;
        pr.owner = owner;
        pr.pool = pool;
        pr.aggregator = p.aggregator;
        pr.minStake = p.minStake;
        pr.arbiter = p.arbiter;
        pr.aggregationWindow = p.aggregationWindow;
        pr.challengeWindow = p.challengeWindow;
        pr.rounds = p.rounds;
        pr.maxTrainers = p.maxTrainers;
        pr.slashAfterFlags = p.slashAfterFlags;
        pr.slashBps = p.slashBps;
        pr.challengeBond = p.challengeBond;
        pr.escrow = pool;
        pr.initialModelSha256 = p.initialModelSha256;
        pr.configSha256 = p.configSha256;
        pr.validationRoot = p.validationRoot;
        pr.initialModelCid = p.initialModelCid;
        pr.configCid = p.configCid;
        _emitCreated(projectId, owner, pool, p);
        emit RoundOpened(projectId, 0, uint64(block.timestamp));
    }

    // ---------------------------------------------------------------- trainers

    /// @inheritdoc ITrainingMarket
    /// @dev Open while the project is active and its last round's commit window has not closed; the aggregator
    /// and the arbiter may not train.
    function register(uint256 projectId) external payable nonReentrant {
        Project storage p = _activeProject(projectId);
        (uint64 commitEnd,,) = _schedule(p);
        if (p.currentRound + 1 == p.rounds && block.timestamp > commitEnd) revert RegistrationClosed(projectId);
        if (msg.value < p.minStake) revert StakeTooLow(projectId, msg.value, p.minStake);
        address trainer = _msgSender();
        if (trainer == p.aggregator || trainer == p.arbiter) revert ConflictOfInterest(projectId, trainer);
        Trainer storage t = _trainers[projectId][trainer];
        if (t.registered) revert AlreadyRegistered(projectId, trainer);
        if (p.trainerCount >= p.maxTrainers) revert ProjectFull(projectId, p.maxTrainers);
        // Checked add: the project's escrow (pool + stakes + bonds) must fit in uint96.
        uint96 stake = _toAmount(msg.value);
        p.escrow = _toAmount(uint256(p.escrow) + stake);
        p.trainerCount += 1;
        t.stake = stake;
        t.registered = true;
        emit TrainerRegistered(projectId, trainer, stake);
    }

    // -------------------------------------------------------------- aggregator

    /// @inheritdoc ITrainingMarket
    /// @dev Allowed once the reveal window has closed, or earlier once commits have closed and every committer
    /// has revealed, provided the round's validation shard is revealed, and never past the aggregation deadline
    /// (then only `cancel` remains). Credits each revealer floor(roundPool * score / sum(scores)); the dust, or
    /// the whole round pool if every score is 0, goes to the owner's refund. Opens the next round, or completes
    /// the project after the last one. Last, if the market has a committee, pins the committee snapshot that may
    /// attest this result.
    function finalizeRound(uint256 projectId, uint16 round, RoundResult calldata r) external nonReentrant {
        Project storage p = _openRound(projectId, round);
        address sender = _msgSender();
        if (sender != p.aggregator) revert NotAggregator(projectId, sender);
        _checkFinalizeTiming(projectId, p, round);
        Round storage rd = _rounds[projectId][round];
        if (rd.validationSha256 == 0) revert ValidationNotRevealed(projectId, round);
        _checkContent(r.modelCid, r.modelSha256);
        _checkContent(r.reportCid, r.reportSha256);
        if (r.scores.length != r.trainers.length) revert LengthMismatch(r.trainers.length, r.scores.length);
        if (r.trainers.length != p.roundReveals) {
            revert SubmitterCountMismatch(projectId, round, p.roundReveals, r.trainers.length);
        }
        uint256 scoreSum = _checkSubmitters(projectId, round, r);
        uint96 roundPool = _roundPool(p, round);
        (uint96 allocated, uint96 flaggedStake, uint96 unflaggedStake) =
            _allocate(projectId, round, r, roundPool, scoreSum);
        bytes32 digest = resultDigestOf(projectId, round, r);

        rd.openedAt = p.roundOpenedAt;
        rd.finalizedAt = uint64(block.timestamp);
        rd.allocated = allocated;
        rd.submitters = uint16(r.trainers.length);
        rd.flaggedCount = uint16(r.flagged.length);
        rd.flaggedStake = flaggedStake;
        rd.resultDigest = digest;
        rd.modelSha256 = r.modelSha256;
        rd.reportSha256 = r.reportSha256;
        rd.modelCid = r.modelCid;
        rd.reportCid = r.reportCid;

        p.allocatedPool += roundPool;
        p.ownerRefund += roundPool - allocated;
        p.workWeight += unflaggedStake;
        p.lastFinalizedAt = uint64(block.timestamp);
        p.roundCommits = 0;
        p.roundReveals = 0;
        p.roundRevealedStake = 0;
        p.currentRound = round + 1;
        _emitFinalized(projectId, round, digest, r, allocated, roundPool - allocated);
        if (round + 1 == p.rounds) {
            p.status = Status.Completed;
            emit ProjectCompleted(projectId);
        } else {
            p.roundOpenedAt = uint40(block.timestamp);
            emit RoundOpened(projectId, round + 1, uint64(block.timestamp));
        }
        // The only interaction, after every effect (the committee reads the digest stored above).
        _pinSnapshot(projectId, round);
    }

    // ---------------------------------------------------------------- liveness

    /// @inheritdoc ITrainingMarket
    /// @dev Past the open round's deadline (reveal window end + aggregationWindow). Finalized rounds keep their
    /// allocations; the rest of the pool goes to trainers pro rata to stake times revealed, unflagged rounds (the
    /// open round's reveals included), and to the owner only if nobody did such work; stakes return less slashes
    /// already due.
    function cancel(uint256 projectId) external nonReentrant {
        Project storage p = _activeProject(projectId);
        (,, uint64 deadline) = _schedule(p);
        if (block.timestamp <= deadline) revert DeadlineNotPassed(projectId, p.currentRound, deadline);
        _cancel(projectId, p, CancelReason.AggregatorMissedDeadline);
    }

    // ------------------------------------------------------------------- views

    /// @inheritdoc ITrainingMarket
    function getProject(uint256 projectId) external view returns (Project memory) {
        return _existingProject(projectId);
    }

    /// @inheritdoc ITrainingMarket
    /// @dev For the open round only `openedAt` (and, once revealed, `validationSha256`) is set.
    function getRound(uint256 projectId, uint16 round) external view returns (Round memory rd) {
        Project storage p = _existingProject(projectId);
        rd = _rounds[projectId][round];
        if (round == p.currentRound && p.status == Status.Active) rd.openedAt = p.roundOpenedAt;
    }

    /// @inheritdoc ITrainingMarket
    function getTrainer(uint256 projectId, address trainer) external view returns (Trainer memory) {
        _existingProject(projectId);
        return _trainers[projectId][trainer];
    }

    /// @inheritdoc ITrainingMarket
    function getSubmission(uint256 projectId, uint16 round, address trainer)
        external
        view
        returns (Submission memory entry)
    {
        _existingProject(projectId);
        uint256 packed = _entries[projectId][round][trainer];
        if (packed >= SEALED_FLOOR) {
            entry.commitment = bytes32(packed);
        } else if (packed != 0) {
            entry.revealed = true;
            entry.flagged = packed & 2 != 0;
            entry.share = uint96(packed >> 2);
        }
    }

    /// @inheritdoc IRoundResultSource
    function roundResultDigest(uint256 projectId, uint16 round) external view returns (bytes32) {
        _existingProject(projectId);
        return _rounds[projectId][round].resultDigest;
    }

    /// @inheritdoc ITrainingMarket
    function resultDigestOf(uint256 projectId, uint16 round, RoundResult calldata r) public view returns (bytes32) {
        bytes32 allocation = keccak256(abi.encode(r.trainers, r.scores, r.flagged));
        return keccak256(
            abi.encode(block.chainid, address(this), projectId, round, r.modelSha256, allocation, r.reportSha256)
        );
    }

    // ---------------------------------------------------------------- internal

    function _checkParams(ProjectParams calldata p, address owner, uint256 projectId) private view {
        _checkContent(p.initialModelCid, p.initialModelSha256);
        _checkContent(p.configCid, p.configSha256);
        if (p.validationRoot == 0) revert InvalidParameter(Parameter.ValidationRoot);
        if (p.rounds == 0) revert InvalidParameter(Parameter.Rounds);
        if (p.roundDuration == 0) revert InvalidParameter(Parameter.RoundDuration);
        if (p.revealWindow == 0) revert InvalidParameter(Parameter.RevealWindow);
        if (p.aggregationWindow == 0) revert InvalidParameter(Parameter.AggregationWindow);
        // A free seat would let anyone fill the project and share its liveness payout at no cost.
        if (p.minStake == 0) revert InvalidParameter(Parameter.MinStake);
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert InvalidParameter(Parameter.MaxTrainers);
        if (p.aggregator == address(0)) revert InvalidParameter(Parameter.Aggregator);
        if (p.slashBps > BPS) revert InvalidParameter(Parameter.SlashBps);
        // An owner who scores its own trainers (or judges their challenges) can zero everyone out.
        if (p.aggregator == owner || p.arbiter == owner) revert ConflictOfInterest(projectId, owner);
        if (p.challengeWindow != 0) {
            // A free challenge would let anyone freeze payouts; an arbiter who is the aggregator judges itself.
            if (p.arbiter == address(0) || p.arbiter == p.aggregator) revert InvalidParameter(Parameter.Arbiter);
            if (p.challengeBond == 0) revert InvalidParameter(Parameter.ChallengeBond);
            // An attester must still be slashable when the arbiter rules against the round it attested.
            if (uint256(p.challengeWindow) + ARBITRATION_PERIOD > _committeeExitDelay()) {
                revert InvalidParameter(Parameter.ChallengeWindow);
            }
        }
    }

    function _emitCreated(uint256 projectId, address owner, uint96 pool, ProjectParams calldata p) private {
        emit ProjectCreated(
            projectId,
            owner,
            p.aggregator,
            p.arbiter,
            pool,
            p.rounds,
            p.initialModelCid,
            p.initialModelSha256,
            p.configCid,
            p.configSha256,
            p.validationRoot
        );
    }

    function _emitFinalized(
        uint256 projectId,
        uint16 round,
        bytes32 digest,
        RoundResult calldata r,
        uint96 allocated,
        uint96 dust
    ) private {
        emit RoundFinalized(
            projectId, round, digest, r.modelCid, r.modelSha256, r.reportCid, r.reportSha256, allocated, dust
        );
        emit RoundScored(projectId, round, r.trainers, r.scores, r.flagged);
    }

    /// @dev Not past the deadline; past the reveal window, or past the commit window with every committer
    /// revealed (nobody can commit any more, so the list of revealers cannot change under the aggregator).
    function _checkFinalizeTiming(uint256 projectId, Project storage p, uint16 round) private view {
        (uint64 commitEnd, uint64 revealEnd, uint64 deadline) = _schedule(p);
        if (block.timestamp > deadline) revert AggregationDeadlinePassed(projectId, round, deadline);
        bool everyoneRevealed = block.timestamp > commitEnd && p.roundReveals == p.roundCommits;
        if (block.timestamp <= revealEnd && !everyoneRevealed) revert RoundStillOpen(projectId, round, revealEnd);
    }

    /// @dev One pass: trainers strictly ascending (no duplicates), each a revealer of this round, and the sorted
    /// `flagged` list merged against them (each flagged trainer listed, with score 0). Returns the score sum.
    function _checkSubmitters(uint256 projectId, uint16 round, RoundResult calldata r)
        private
        view
        returns (uint256 scoreSum)
    {
        mapping(address => uint256) storage entries = _entries[projectId][round];
        uint256 k;
        address previous;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            if (i != 0 && trainer <= previous) revert TrainersNotSorted(i);
            if (entries[trainer] != REVEALED) revert NotSubmitter(projectId, round, trainer);
            if (k < r.flagged.length && r.flagged[k] == trainer) {
                if (r.scores[i] != 0) revert FlaggedTrainerScored(projectId, round, trainer, r.scores[i]);
                ++k;
            }
            scoreSum += r.scores[i];
            previous = trainer;
        }
        if (k != r.flagged.length) revert FlaggedNotSubmitter(projectId, round, r.flagged[k]);
    }

    /// @dev Credits floor(roundPool * score / scoreSum) to each revealer (never more than roundPool in total),
    /// counts the round for it, and records each share and flag in its entry so that an upheld challenge can
    /// reverse them. Returns the wei allocated and the stake of the flagged and of the unflagged revealers.
    function _allocate(uint256 projectId, uint16 round, RoundResult calldata r, uint96 roundPool, uint256 scoreSum)
        private
        returns (uint96 allocated, uint96 flaggedStake, uint96 unflaggedStake)
    {
        mapping(address => uint256) storage entries = _entries[projectId][round];
        mapping(address => Trainer) storage trainers = _trainers[projectId];
        uint256 k;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            bool flagged = k < r.flagged.length && r.flagged[k] == trainer;
            if (flagged) ++k;
            // roundPool < 2^96 and score < 2^64: the product fits; the quotient is <= roundPool.
            uint96 share = scoreSum == 0 ? 0 : uint96((uint256(roundPool) * r.scores[i]) / scoreSum);
            Trainer storage t = trainers[trainer];
            t.reward += share;
            t.submissions += 1;
            if (flagged) {
                t.flags += 1;
                flaggedStake += t.stake;
            } else {
                unflaggedStake += t.stake;
            }
            entries[trainer] = REVEALED | (flagged ? 2 : 0) | (uint256(share) << 2);
            allocated += share;
        }
    }
}
