// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IRoundAttestor: what TrainingMarket needs from a verifier committee
/// @notice {VerifierCommittee} implements it: `isAttested` says whether a quorum of the committee signed the result
/// digest the market stores for a round now; `pinSnapshot` fixes which committee epoch may attest it (idempotent).
/// @dev `pinSnapshot` returns the epoch in VerifierCommittee; the market ignores it, and the selector does not
/// depend on return types.
interface IRoundAttestor {
    function isAttested(address market, uint256 projectId, uint16 round) external view returns (bool);

    function pinSnapshot(address market, uint256 projectId, uint16 round) external;
}

/// @title ITrainingMarket: types, events and errors of the proof-of-contribution training marketplace
/// @notice The implementation is {TrainingMarket}; this file is the surface that off-chain code (the aggregator,
/// the round runner, the CLI) decodes. Amounts are wei in uint96, times are unix seconds in uint64, durations are
/// seconds in uint32, counters are uint16. Rounds are numbered 0..rounds-1 and project ids start at 1.
interface ITrainingMarket {
    /// @notice Lifecycle of a project. `Completed`: the last round was finalized. `Cancelled`: by the liveness
    /// rule, either because the aggregator missed a deadline or because a challenge was upheld.
    enum Status {
        None,
        Active,
        Completed,
        Cancelled
    }

    /// @notice State of the (at most one) challenge against a finalized round.
    /// `Lapsed`: the arbiter did not rule within ARBITRATION_PERIOD; the round stands and the bond goes back.
    enum ChallengeState {
        None,
        Open,
        Rejected,
        Upheld,
        Lapsed
    }

    /// @notice Why a project was cancelled.
    enum CancelReason {
        AggregatorMissedDeadline,
        ChallengeUpheld
    }

    /// @notice Everything `createProject` records; msg.value is the reward pool.
    /// @dev configCid/configSha256 name the project manifest (model, aggregation rule and parameters, validation
    /// set) so that anyone can recompute a round. challengeWindow == 0 disables challenges (then arbiter and
    /// challengeBond may be zero); slashAfterFlags == 0 disables slashing.
    struct ProjectParams {
        string initialModelCid;
        bytes32 initialModelSha256;
        string configCid;
        bytes32 configSha256;
        uint16 rounds;
        uint32 roundDuration;
        uint32 aggregationWindow;
        uint96 minStake;
        uint16 maxTrainers;
        address aggregator;
        address arbiter;
        uint32 challengeWindow;
        uint96 challengeBond;
        uint16 slashAfterFlags;
        uint16 slashBps;
    }

    /// @notice What the aggregator posts for one round.
    /// @dev `trainers` is exactly the round's submitters, sorted by ascending address (this is how the contract
    /// proves the list has no duplicates in O(n)); `scores[i]` belongs to `trainers[i]` (fixed point, 1e18 = 1.0;
    /// the contract normalizes by their sum); `flagged` is a sorted subset of `trainers` whose scores are 0.
    struct RoundResult {
        string modelCid;
        bytes32 modelSha256;
        address[] trainers;
        uint64[] scores;
        address[] flagged;
        string reportCid;
        bytes32 reportSha256;
    }

    /// @notice A project as stored (returned by `getProject`). Fields are grouped by storage slot.
    /// @dev `currentRound` is the open round (== rounds once the last round is finalized); `roundSubmissions`
    /// counts its submissions. `allocatedPool` is the pool of the finalized rounds that still stand,
    /// `ownerRefund` the part of it nobody earned (rounding dust, rounds where every score was 0), `escrow` the
    /// wei this project holds right now (pool + stakes + bonds - payouts - burns).
    struct Project {
        address owner;
        uint64 roundOpenedAt;
        uint16 rounds;
        uint16 currentRound;
        address aggregator;
        uint32 roundDuration;
        uint32 aggregationWindow;
        uint16 roundSubmissions;
        Status status;
        bool ownerClaimed;
        address arbiter;
        uint32 challengeWindow;
        uint16 maxTrainers;
        uint16 trainerCount;
        uint16 slashAfterFlags;
        uint16 slashBps;
        uint96 pool;
        uint96 minStake;
        uint64 lastFinalizedAt;
        uint96 challengeBond;
        uint96 escrow;
        uint32 totalSubmissions;
        uint16 openChallenges;
        uint96 allocatedPool;
        uint96 ownerRefund;
        uint32 totalFlags;
        bytes32 initialModelSha256;
        bytes32 configSha256;
        string initialModelCid;
        string configCid;
    }

    /// @notice A finalized round as stored (returned by `getRound`; an unfinalized round reads as zeros except
    /// `openedAt` for the open round).
    struct Round {
        uint64 openedAt;
        uint64 finalizedAt;
        uint96 allocated;
        uint16 submitters;
        uint16 flaggedCount;
        address challenger;
        uint64 challengedAt;
        ChallengeState challenge;
        bytes32 resultDigest;
        bytes32 modelSha256;
        bytes32 reportSha256;
        string modelCid;
        string reportCid;
    }

    /// @notice A trainer's standing in one project. `reward` is the sum of its shares of finalized rounds
    /// (reversed rounds are subtracted at claim time); `flags` counts rounds in which it was flagged.
    struct Trainer {
        uint96 stake;
        uint96 reward;
        uint16 submissions;
        uint16 flags;
        bool registered;
        bool claimed;
    }

    /// @notice One trainer's entry in one round: written by `submitUpdate`, completed by `finalizeRound`.
    struct Submission {
        bool submitted;
        bool flagged;
        uint96 share;
    }

    event ProjectCreated(
        uint256 indexed projectId,
        address indexed owner,
        address indexed aggregator,
        address arbiter,
        uint96 pool,
        uint16 rounds,
        string initialModelCid,
        bytes32 initialModelSha256,
        string configCid,
        bytes32 configSha256
    );
    event RoundOpened(uint256 indexed projectId, uint16 indexed round, uint64 openedAt);
    event TrainerRegistered(uint256 indexed projectId, address indexed trainer, uint96 stake);
    event UpdateSubmitted(
        uint256 indexed projectId, uint16 indexed round, address indexed trainer, string cid, bytes32 sha256
    );
    /// @notice `resultDigest` is what the verifier committee signs; `allocated` went to trainers, `dust` (the
    /// round's pool minus `allocated`) to the owner's refund.
    event RoundFinalized(
        uint256 indexed projectId,
        uint16 indexed round,
        bytes32 resultDigest,
        string modelCid,
        bytes32 modelSha256,
        string reportCid,
        bytes32 reportSha256,
        uint96 allocated,
        uint96 dust
    );
    /// @notice The inputs of the round's allocation, so that indexers need not decode calldata.
    event RoundScored(
        uint256 indexed projectId, uint16 indexed round, address[] trainers, uint64[] scores, address[] flagged
    );
    event ProjectCompleted(uint256 indexed projectId);
    event ProjectCancelled(uint256 indexed projectId, address indexed by, CancelReason reason, uint16 openRound);
    event ChallengeOpened(uint256 indexed projectId, uint16 indexed round, address indexed challenger, uint96 bond);
    event ChallengeResolved(uint256 indexed projectId, uint16 indexed round, bool upheld);
    event ChallengeLapsed(uint256 indexed projectId, uint16 indexed round);
    event RoundReversed(uint256 indexed projectId, uint16 indexed round, uint96 allocated);
    event Burned(uint256 indexed projectId, address indexed from, uint256 amount);
    event Claimed(uint256 indexed projectId, address indexed account, uint256 amount, uint256 slashed);
    /// @notice The committee's `pinSnapshot` reverted at finalization; the round was finalized anyway and the
    /// committee pins its snapshot at the first attestation instead.
    event CommitteePinFailed(uint256 indexed projectId, uint16 indexed round);

    error UnknownProject(uint256 projectId);
    error ProjectNotActive(uint256 projectId, Status status);
    error InvalidParameter(string name);
    error EmptyPool();
    error AmountTooLarge(uint256 amount);
    error InvalidContentReference(string cid, bytes32 sha256Digest);
    error RegistrationClosed(uint256 projectId);
    error StakeTooLow(uint256 projectId, uint256 stake, uint256 minStake);
    error ProjectFull(uint256 projectId, uint16 maxTrainers);
    error AlreadyRegistered(uint256 projectId, address trainer);
    error ConflictOfInterest(uint256 projectId, address account);
    error NotRegistered(uint256 projectId, address trainer);
    error WrongRound(uint256 projectId, uint16 round, uint16 openRound);
    error SubmissionWindowClosed(uint256 projectId, uint16 round, uint64 closedAt);
    error AlreadySubmitted(uint256 projectId, uint16 round, address trainer);
    error NotAggregator(uint256 projectId, address caller);
    error RoundStillOpen(uint256 projectId, uint16 round, uint64 closesAt);
    error AggregationDeadlinePassed(uint256 projectId, uint16 round, uint64 deadline);
    error LengthMismatch(uint256 trainers, uint256 scores);
    error SubmitterCountMismatch(uint256 projectId, uint16 round, uint256 submitters, uint256 listed);
    error TrainersNotSorted(uint256 index);
    error NotSubmitter(uint256 projectId, uint16 round, address trainer);
    error FlaggedNotSubmitter(uint256 projectId, uint16 round, address trainer);
    error FlaggedTrainerScored(uint256 projectId, uint16 round, address trainer, uint64 score);
    error DeadlineNotPassed(uint256 projectId, uint16 round, uint64 deadline);
    error ChallengesDisabled(uint256 projectId);
    error RoundNotFinalized(uint256 projectId, uint16 round);
    error AlreadyChallenged(uint256 projectId, uint16 round);
    error ChallengeWindowClosed(uint256 projectId, uint16 round, uint64 closedAt);
    error WrongBond(uint256 sent, uint256 required);
    error NotArbiter(uint256 projectId, address caller);
    error NoOpenChallenge(uint256 projectId, uint16 round);
    error ArbitrationPending(uint256 projectId, uint16 round, uint64 until);
    error ClaimsNotOpen(uint256 projectId);
    error AlreadyClaimed(uint256 projectId, address account);
    error NothingToClaim(uint256 projectId, address account);
    /// @notice A quorum of the verifier committee attested this round's result: the arbiter path is for rounds
    /// without one.
    error RoundAlreadyAttested(uint256 projectId, uint16 round);
    /// @notice Too little gas left to give a committee call all of COMMITTEE_CALL_GAS (send more gas).
    error CommitteeGasTooLow(uint256 gasLeft, uint256 needed);
    /// @notice A relayed submission (`submitUpdateFor`) whose signature deadline has passed.
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    /// @notice A relayed submission whose signature is not the trainer's over exactly these fields and its nonce.
    error InvalidSignature(address trainer);
}
