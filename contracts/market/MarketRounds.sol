// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundResultSource} from "../interfaces/IRoundResultSource.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketRounds: projects, trainers, submissions, finalization and the liveness rule
/// @notice An owner escrows a pool (`createProject`); trainers stake (`register`) and submit one update per round
/// (`submitUpdate`); the aggregator posts each round's scores (`finalizeRound`), which credits trainers at once;
/// if the aggregator misses a deadline, anyone may `cancel` and the unallocated pool goes to the trainers' work.
abstract contract MarketRounds is MarketBase {
    // ------------------------------------------------------------------ owner

    /// @inheritdoc ITrainingMarket
    function createProject(ProjectParams calldata p) external payable nonReentrant returns (uint256 projectId) {
        _checkParams(p);
        if (msg.value == 0) revert EmptyPool();
        if (msg.value > type(uint96).max) revert AmountTooLarge(msg.value);
        uint96 pool = uint96(msg.value);
        projectId = ++projectCount;
        Project storage pr = _projects[projectId];
        pr.owner = msg.sender;
        pr.roundOpenedAt = uint64(block.timestamp);
        pr.rounds = p.rounds;
        pr.aggregator = p.aggregator;
        pr.roundDuration = p.roundDuration;
        pr.aggregationWindow = p.aggregationWindow;
        pr.status = Status.Active;
        pr.arbiter = p.arbiter;
        pr.challengeWindow = p.challengeWindow;
        pr.maxTrainers = p.maxTrainers;
        pr.slashAfterFlags = p.slashAfterFlags;
        pr.slashBps = p.slashBps;
        pr.pool = pool;
        pr.minStake = p.minStake;
        pr.challengeBond = p.challengeBond;
        pr.escrow = pool;
        pr.initialModelSha256 = p.initialModelSha256;
        pr.configSha256 = p.configSha256;
        pr.initialModelCid = p.initialModelCid;
        pr.configCid = p.configCid;
        _emitCreated(projectId, pool, p);
        emit RoundOpened(projectId, 0, uint64(block.timestamp));
    }

    // ---------------------------------------------------------------- trainers

    /// @inheritdoc ITrainingMarket
    /// @dev Open while the project is active and its last round's submission window has not closed; the
    /// aggregator and the arbiter may not train.
    function register(uint256 projectId) external payable nonReentrant {
        Project storage p = _activeProject(projectId);
        if (p.currentRound + 1 == p.rounds && block.timestamp > _windowEnd(p)) revert RegistrationClosed(projectId);
        if (msg.value < p.minStake) revert StakeTooLow(projectId, msg.value, p.minStake);
        if (msg.sender == p.aggregator || msg.sender == p.arbiter) revert ConflictOfInterest(projectId, msg.sender);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (t.registered) revert AlreadyRegistered(projectId, msg.sender);
        if (p.trainerCount >= p.maxTrainers) revert ProjectFull(projectId, p.maxTrainers);
        // Checked add: the project's escrow (pool + stakes + bonds) must fit in uint96.
        uint96 stake = _toAmount(msg.value);
        p.escrow = _toAmount(uint256(p.escrow) + stake);
        p.trainerCount += 1;
        t.stake = stake;
        t.registered = true;
        emit TrainerRegistered(projectId, msg.sender, stake);
    }

    /// @inheritdoc ITrainingMarket
    /// @dev Once per round, within its submission window.
    function submitUpdate(uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest)
        external
        nonReentrant
    {
        _submitUpdate(msg.sender, projectId, round, cid, sha256Digest);
    }

    // -------------------------------------------------------------- aggregator

    /// @inheritdoc ITrainingMarket
    /// @dev Allowed once the submission window has closed, or earlier once every registered trainer has
    /// submitted, and never past the aggregation deadline (then only `cancel` remains). Credits each trainer
    /// floor(roundPool * score / sum(scores)); the dust, or the whole round pool if every score is 0, goes to the
    /// owner's refund. Opens the next round, or completes the project after the last one. Last, if the market
    /// has a committee, pins the committee snapshot that may attest this result.
    function finalizeRound(uint256 projectId, uint16 round, RoundResult calldata r) external nonReentrant {
        Project storage p = _activeProject(projectId);
        if (msg.sender != p.aggregator) revert NotAggregator(projectId, msg.sender);
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
        _checkFinalizeTiming(projectId, p, round);
        _checkContent(r.modelCid, r.modelSha256);
        _checkContent(r.reportCid, r.reportSha256);
        if (r.scores.length != r.trainers.length) revert LengthMismatch(r.trainers.length, r.scores.length);
        if (r.trainers.length != p.roundSubmissions) {
            revert SubmitterCountMismatch(projectId, round, p.roundSubmissions, r.trainers.length);
        }
        uint256 scoreSum = _checkSubmitters(projectId, round, r);
        uint96 roundPool = _roundPool(p, round);
        uint96 allocated = _allocate(projectId, round, r, roundPool, scoreSum);
        bytes32 digest = resultDigestOf(projectId, round, r);

        Round storage rd = _rounds[projectId][round];
        rd.openedAt = p.roundOpenedAt;
        rd.finalizedAt = uint64(block.timestamp);
        rd.allocated = allocated;
        rd.submitters = uint16(r.trainers.length);
        rd.flaggedCount = uint16(r.flagged.length);
        rd.resultDigest = digest;
        rd.modelSha256 = r.modelSha256;
        rd.reportSha256 = r.reportSha256;
        rd.modelCid = r.modelCid;
        rd.reportCid = r.reportCid;

        p.allocatedPool += roundPool;
        p.ownerRefund += roundPool - allocated;
        p.totalSubmissions += uint32(r.trainers.length);
        p.totalFlags += uint32(r.flagged.length);
        p.lastFinalizedAt = uint64(block.timestamp);
        p.roundSubmissions = 0;
        p.currentRound = round + 1;
        _emitFinalized(projectId, round, digest, r, allocated, roundPool - allocated);
        if (round + 1 == p.rounds) {
            p.status = Status.Completed;
            emit ProjectCompleted(projectId);
        } else {
            p.roundOpenedAt = uint64(block.timestamp);
            emit RoundOpened(projectId, round + 1, uint64(block.timestamp));
        }
        // The only interaction, after every effect (the committee reads the digest stored above).
        _pinSnapshot(projectId, round);
    }

    // ---------------------------------------------------------------- liveness

    /// @inheritdoc ITrainingMarket
    /// @dev Past the open round's deadline (submission window end + aggregationWindow). Finalized rounds keep
    /// their allocations; the rest of the pool goes to trainers pro rata to their unflagged submissions (all
    /// rounds, the open one included), the rounding remainder (or all of it if nobody submitted) to the owner;
    /// stakes return less slashes already due.
    function cancel(uint256 projectId) external nonReentrant {
        Project storage p = _activeProject(projectId);
        uint64 deadline = _windowEnd(p) + p.aggregationWindow;
        if (block.timestamp <= deadline) revert DeadlineNotPassed(projectId, p.currentRound, deadline);
        _cancel(projectId, p, CancelReason.AggregatorMissedDeadline);
    }

    // ------------------------------------------------------------------- views

    /// @inheritdoc ITrainingMarket
    function getProject(uint256 projectId) external view returns (Project memory) {
        return _existingProject(projectId);
    }

    /// @inheritdoc ITrainingMarket
    /// @dev For the open round only `openedAt` is set.
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
        returns (Submission memory)
    {
        _existingProject(projectId);
        return _submissions[projectId][round][trainer];
    }

    /// @inheritdoc ITrainingMarket
    function roundDeadlines(uint256 projectId) external view returns (uint64 windowEnd, uint64 aggregatorDeadline) {
        Project storage p = _existingProject(projectId);
        windowEnd = _windowEnd(p);
        aggregatorDeadline = windowEnd + p.aggregationWindow;
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

    /// @inheritdoc MarketBase
    function _submitUpdate(address trainer, uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest)
        internal
        override
    {
        Project storage p = _activeProject(projectId);
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
        uint64 closesAt = _windowEnd(p);
        if (block.timestamp > closesAt) revert SubmissionWindowClosed(projectId, round, closesAt);
        _checkContent(cid, sha256Digest);
        Trainer storage t = _trainers[projectId][trainer];
        if (!t.registered) revert NotRegistered(projectId, trainer);
        Submission storage s = _submissions[projectId][round][trainer];
        if (s.submitted) revert AlreadySubmitted(projectId, round, trainer);
        s.submitted = true;
        t.submissions += 1;
        p.roundSubmissions += 1;
        emit UpdateSubmitted(projectId, round, trainer, cid, sha256Digest);
    }

    function _checkParams(ProjectParams calldata p) private pure {
        _checkContent(p.initialModelCid, p.initialModelSha256);
        _checkContent(p.configCid, p.configSha256);
        if (p.rounds == 0) revert InvalidParameter("rounds");
        if (p.roundDuration == 0) revert InvalidParameter("roundDuration");
        if (p.aggregationWindow == 0) revert InvalidParameter("aggregationWindow");
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert InvalidParameter("maxTrainers");
        if (p.aggregator == address(0)) revert InvalidParameter("aggregator");
        if (p.slashBps > BPS) revert InvalidParameter("slashBps");
        if (p.challengeWindow != 0) {
            // A free challenge would let anyone freeze payouts; an arbiter who is the aggregator judges itself.
            if (p.arbiter == address(0) || p.arbiter == p.aggregator) revert InvalidParameter("arbiter");
            if (p.challengeBond == 0) revert InvalidParameter("challengeBond");
        }
    }

    function _emitCreated(uint256 projectId, uint96 pool, ProjectParams calldata p) private {
        emit ProjectCreated(
            projectId,
            msg.sender,
            p.aggregator,
            p.arbiter,
            pool,
            p.rounds,
            p.initialModelCid,
            p.initialModelSha256,
            p.configCid,
            p.configSha256
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

    function _checkFinalizeTiming(uint256 projectId, Project storage p, uint16 round) private view {
        uint64 closesAt = _windowEnd(p);
        uint64 deadline = closesAt + p.aggregationWindow;
        if (block.timestamp > deadline) revert AggregationDeadlinePassed(projectId, round, deadline);
        // Early finalization once every registered trainer has submitted, so a demo need not wait.
        bool everyoneSubmitted = p.roundSubmissions != 0 && p.roundSubmissions == p.trainerCount;
        if (block.timestamp <= closesAt && !everyoneSubmitted) revert RoundStillOpen(projectId, round, closesAt);
    }

    /// @dev One pass: trainers strictly ascending (no duplicates), each a submitter of this round, and the sorted
    /// `flagged` list merged against them (each flagged trainer listed, with score 0). Returns the score sum.
    function _checkSubmitters(uint256 projectId, uint16 round, RoundResult calldata r)
        private
        view
        returns (uint256 scoreSum)
    {
        mapping(address => Submission) storage subs = _submissions[projectId][round];
        uint256 k;
        address previous;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            if (i != 0 && trainer <= previous) revert TrainersNotSorted(i);
            if (!subs[trainer].submitted) revert NotSubmitter(projectId, round, trainer);
            if (k < r.flagged.length && r.flagged[k] == trainer) {
                if (r.scores[i] != 0) revert FlaggedTrainerScored(projectId, round, trainer, r.scores[i]);
                ++k;
            }
            scoreSum += r.scores[i];
            previous = trainer;
        }
        if (k != r.flagged.length) revert FlaggedNotSubmitter(projectId, round, r.flagged[k]);
    }

    /// @dev Credits floor(roundPool * score / scoreSum) to each trainer (never more than roundPool in total)
    /// and records each share and flag so that an upheld challenge can reverse them.
    function _allocate(uint256 projectId, uint16 round, RoundResult calldata r, uint96 roundPool, uint256 scoreSum)
        private
        returns (uint96 allocated)
    {
        mapping(address => Submission) storage subs = _submissions[projectId][round];
        mapping(address => Trainer) storage trainers = _trainers[projectId];
        uint256 k;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            bool flagged = k < r.flagged.length && r.flagged[k] == trainer;
            if (flagged) ++k;
            // roundPool < 2^96 and score < 2^64: the product fits; the quotient is <= roundPool.
            uint96 share = scoreSum == 0 ? 0 : uint96((uint256(roundPool) * r.scores[i]) / scoreSum);
            if (share == 0 && !flagged) continue;
            Trainer storage t = trainers[trainer];
            t.reward += share;
            if (flagged) t.flags += 1;
            Submission storage s = subs[trainer];
            s.share = share;
            s.flagged = flagged;
            allocated += share;
        }
    }
}
