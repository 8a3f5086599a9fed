// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title ISourceRegistry: types, events, errors and functions of the dRAG source registry
/// @notice The implementation is {SourceRegistry}; this file is the surface the query service, the source nodes
/// and the explorer decode. Reliability is a Beta(alpha, beta) posterior in fixed-point units (`SCALE` per
/// observation). Time is cut into epochs of `epochLength` seconds from deployment: feedback moves a source at
/// most `maxDelta` each way per epoch, whoever sends it, and an evaluator's canary questions for an epoch are
/// committed before it starts and revealed after it ends.
interface ISourceRegistry {
    /// @notice Lifecycle of a source. Feedback still applies while `Exiting` (a source cannot outrun bad news).
    enum Status {
        None,
        Active,
        Exiting,
        Withdrawn
    }

    /// @notice An evaluator's canary set for one epoch: the hash it committed, how many questions it holds, and
    /// whether it was revealed.
    struct CanarySet {
        bytes32 commitment;
        bool revealed;
        uint16 count;
    }

    /// @notice A source was registered.
    /// @param id The new source id (ids run from 1).
    /// @param operator The wallet that registered it and signs its answers.
    /// @param bond Wei locked with it.
    /// @param endpoint URL of its node.
    /// @param commitment Merkle root of its corpus.
    /// @param inheritedFrom The earlier source (same corpus or endpoint) whose record it took over, 0 for none.
    event SourceRegistered(
        uint32 indexed id,
        address indexed operator,
        uint256 bond,
        string endpoint,
        bytes32 commitment,
        uint32 inheritedFrom
    );
    /// @notice A source moved to a new endpoint.
    /// @param id The source.
    /// @param endpoint Its new URL.
    event EndpointUpdated(uint32 indexed id, string endpoint);
    /// @notice A source committed to a new corpus; its confidence was reset (mean kept, evidence cut to the prior's).
    /// @param id The source.
    /// @param commitment The new Merkle root.
    /// @param alpha The record's alpha after the reset.
    /// @param beta The record's beta after the reset.
    event CommitmentUpdated(uint32 indexed id, bytes32 commitment, uint64 alpha, uint64 beta);
    /// @notice A source stopped serving; its bond can be withdrawn from `availableAt`.
    /// @param id The source.
    /// @param availableAt Unix time from which `withdrawBond` pays.
    event ExitRequested(uint32 indexed id, uint64 availableAt);
    /// @notice A leaving source's bond was paid back.
    /// @param id The source.
    /// @param operator Who was paid.
    /// @param amount Wei paid.
    event BondWithdrawn(uint32 indexed id, address indexed operator, uint256 amount);
    /// @notice One feedback batch; `entries` is the packed calldata, so the deltas can be replayed off chain.
    /// @param batch The batch's sequence number (1, 2, ...).
    /// @param epoch The epoch whose budgets it spent.
    /// @param evaluator Who sent it.
    /// @param count Number of entries.
    /// @param entries The packed 8-byte entries.
    event FeedbackApplied(
        uint64 indexed batch, uint64 indexed epoch, address indexed evaluator, uint256 count, bytes entries
    );
    /// @notice An evaluator committed to the canary questions it will mix into an epoch's queries.
    /// @param epoch The epoch (still in the future).
    /// @param evaluator Who committed.
    /// @param commitment keccak256 of (chain id, registry, evaluator, epoch, salt, count, keccak256(canaries)).
    /// @param count Number of canary questions.
    event CanariesCommitted(uint64 indexed epoch, address indexed evaluator, bytes32 commitment, uint16 count);
    /// @notice An evaluator revealed an epoch's canaries, so anyone can check how it scored the sources.
    /// @param epoch The (finished) epoch.
    /// @param evaluator Who revealed.
    /// @param salt The commitment's salt.
    /// @param canaries The canary set as committed (JSON lines: question, answers, reference passage).
    event CanariesRevealed(uint64 indexed epoch, address indexed evaluator, bytes32 salt, bytes canaries);
    /// @notice A source was shown wrong on revealed canaries and part of its bond was burned.
    /// @param id The source.
    /// @param epoch The epoch of the canaries.
    /// @param evaluator Who slashed.
    /// @param amount Wei burned.
    /// @param failures Canaries on which the source served a tampered copy of the reference passage.
    /// @param evidence sha256 of the evidence file (the source's signed answers to those canaries).
    event SourceSlashed(
        uint32 indexed id, uint64 indexed epoch, address indexed evaluator, uint256 amount, uint16 failures,
        bytes32 evidence
    );

    /// @notice The bond sent is below what this operator must lock for one more source.
    /// @param sent Wei sent.
    /// @param required Wei required (`minBond` times the operator's active sources plus one).
    error BondTooSmall(uint256 sent, uint256 required);
    /// @notice The bond does not fit the 96 bits a source stores.
    /// @param sent Wei sent.
    error BondTooLarge(uint256 sent);
    /// @notice An empty endpoint URL.
    error EmptyEndpoint();
    /// @notice A zero corpus commitment.
    error ZeroCommitment();
    /// @notice Another live source already committed to this corpus (copies add no independent evidence).
    /// @param commitment The Merkle root.
    /// @param holder The source holding it.
    error CommitmentTaken(bytes32 commitment, uint32 holder);
    /// @notice Another live source already serves from this endpoint.
    /// @param endpoint The URL.
    /// @param holder The source using it.
    error EndpointTaken(string endpoint, uint32 holder);
    /// @notice No source has this id.
    /// @param id The id asked for.
    error UnknownSource(uint32 id);
    /// @notice Only the source's operator may do this.
    /// @param id The source.
    /// @param caller Who tried.
    error NotOperator(uint32 id, address caller);
    /// @notice The source is not Active.
    /// @param id The source.
    error SourceNotActive(uint32 id);
    /// @notice The source has not asked to exit.
    /// @param id The source.
    error SourceNotExiting(uint32 id);
    /// @notice The exit delay has not passed.
    /// @param id The source.
    /// @param availableAt Unix time from which the bond can be withdrawn.
    error ExitNotReady(uint32 id, uint64 availableAt);
    /// @notice A batch out of sequence: stale, replayed or raced by another evaluator.
    /// @param expected The next batch number.
    /// @param given The number sent.
    error WrongBatch(uint64 expected, uint64 given);
    /// @notice A batch without entries.
    error EmptyBatch();
    /// @notice Entries that are not whole 8-byte records.
    /// @param length Bytes sent.
    error MalformedBatch(uint256 length);
    /// @notice Ids not strictly ascending (each source at most once per batch).
    /// @param id The offending id.
    /// @param previous The id before it.
    error UnsortedBatch(uint32 id, uint32 previous);
    /// @notice The entry would move the source more than `maxDelta` in this epoch (all evaluators together).
    /// @param id The source.
    /// @param epoch The current epoch.
    /// @param positive Positive units asked for, with what the epoch already spent.
    /// @param negative Negative units asked for, with what the epoch already spent.
    error EpochBudgetExceeded(uint32 id, uint64 epoch, uint256 positive, uint256 negative);
    /// @notice Canaries must be committed before their epoch starts.
    /// @param epoch The epoch asked for.
    /// @param current The current epoch.
    error EpochNotInFuture(uint64 epoch, uint64 current);
    /// @notice Canaries can only be revealed (and used to slash) after their epoch ends.
    /// @param epoch The epoch asked for.
    /// @param current The current epoch.
    error EpochNotOver(uint64 epoch, uint64 current);
    /// @notice This evaluator already committed canaries for that epoch.
    /// @param epoch The epoch.
    error CanariesAlreadyCommitted(uint64 epoch);
    /// @notice This evaluator committed no canaries for that epoch.
    /// @param epoch The epoch.
    error NoCanaries(uint64 epoch);
    /// @notice The canaries were revealed already.
    /// @param epoch The epoch.
    error CanariesAlreadyRevealed(uint64 epoch);
    /// @notice The revealed canaries do not hash to the commitment.
    /// @param epoch The epoch.
    error CanaryMismatch(uint64 epoch);
    /// @notice Slashing needs the epoch's canaries revealed first, so that anyone can check the evidence.
    /// @param epoch The epoch.
    error CanariesNotRevealed(uint64 epoch);
    /// @notice Failures must be between 1 and the number of canaries of the epoch.
    /// @param failures Failures claimed.
    /// @param count Canaries in the epoch.
    error BadFailureCount(uint16 failures, uint16 count);
    /// @notice The source was slashed for this epoch already.
    /// @param id The source.
    /// @param epoch The epoch.
    error AlreadySlashed(uint32 id, uint64 epoch);
    /// @notice A constructor argument out of range.
    error InvalidConfig();

    /// @notice Register a source: lock a bond (msg.value) and publish its endpoint and corpus commitment. A corpus
    /// or endpoint that a withdrawn source used brings that source's record with it.
    /// @param endpoint URL of the source node.
    /// @param commitment Merkle root of the source's corpus (sorted-pair keccak, OpenZeppelin MerkleProof).
    /// @return id The new source id.
    function registerSource(string calldata endpoint, bytes32 commitment) external payable returns (uint32 id);

    /// @notice Move an active source to a new endpoint URL (one no other live source uses).
    /// @param id The source.
    /// @param endpoint The new URL.
    function updateEndpoint(uint32 id, string calldata endpoint) external;

    /// @notice Publish a new corpus commitment for an active source: its mean stays, its evidence is cut to the
    /// prior's weight (five observations), so what it now serves is learned afresh.
    /// @param id The source.
    /// @param commitment The new Merkle root (one no other live source holds).
    function updateCommitment(uint32 id, bytes32 commitment) external;

    /// @notice Stop serving; the bond can be withdrawn `exitDelay` seconds later. Feedback and slashes still apply.
    /// @param id The source.
    function requestExit(uint32 id) external;

    /// @notice Pull the bond back after the exit delay.
    /// @param id The source.
    function withdrawBond(uint32 id) external;

    /// @notice Apply one batch of reliability feedback.
    /// @param batch Must be `batches + 1`: a batch applies once, in order; a stale or replayed one reverts.
    /// @param entries Concatenated 8-byte entries `uint32 id | uint16 positive | uint16 negative` (big-endian),
    ///        ids strictly ascending; with what earlier batches of this epoch moved the source, each side at most
    ///        `maxDelta`. Calldata keeps a batch of 50 at 400 bytes.
    function applyFeedback(uint64 batch, bytes calldata entries) external;

    /// @notice Commit to the canary questions this evaluator will mix into a future epoch's queries.
    /// @param epoch An epoch that has not started.
    /// @param commitment See {canaryCommitment}.
    /// @param count Number of canary questions in the set.
    function commitCanaries(uint64 epoch, bytes32 commitment, uint16 count) external;

    /// @notice Reveal a finished epoch's canaries (they appear in the event for anyone to check the scoring).
    /// @param epoch A finished epoch this evaluator committed canaries for.
    /// @param salt The salt of the commitment.
    /// @param canaries The canary set's bytes as committed.
    function revealCanaries(uint64 epoch, bytes32 salt, bytes calldata canaries) external;

    /// @notice Burn part of a source's bond for serving tampered copies of revealed canaries' reference passages;
    /// once per source and epoch (and in epoch order). The source stays registered: its record, which the same
    /// canaries moved, decides how often it is asked; slashing makes each tampered canary cost `slashBps`.
    /// @param id The source.
    /// @param epoch A finished epoch whose canaries this evaluator revealed.
    /// @param failures Canaries the source failed with a tampered passage (1..count).
    /// @param evidence sha256 of the evidence file (the source's signed answers), for anyone to check.
    function slash(uint32 id, uint64 epoch, uint16 failures, bytes32 evidence) external;

    /// @notice The epoch now: whole `epochLength`s since deployment.
    /// @return epoch The current epoch.
    function currentEpoch() external view returns (uint64 epoch);

    /// @notice Bond `operator` must lock to register one more source: `minBond` times its live sources plus one.
    /// @param operator The wallet.
    /// @return bond The wei required.
    function requiredBond(address operator) external view returns (uint256 bond);

    /// @notice The hash `commitCanaries` takes: binds the set to this chain, registry, evaluator and epoch.
    /// @param evaluator Who commits.
    /// @param epoch The epoch.
    /// @param salt A random 32-byte salt (so a small set cannot be guessed from its hash).
    /// @param count Number of questions.
    /// @param canaries The set's bytes.
    /// @return commitment The hash to commit.
    function canaryCommitment(address evaluator, uint64 epoch, bytes32 salt, uint16 count, bytes calldata canaries)
        external
        view
        returns (bytes32 commitment);

    /// @notice An evaluator's canary set for an epoch (zero commitment when none).
    /// @param evaluator The evaluator.
    /// @param epoch The epoch.
    /// @return set The commitment, whether it was revealed, and its size.
    function canaries(address evaluator, uint64 epoch) external view returns (CanarySet memory set);

    /// @notice A source's registration.
    /// @param id The source.
    /// @return operator Its operator.
    /// @return bond Its bond, in wei.
    /// @return status Its status.
    /// @return exitAvailableAt When its bond can be withdrawn (0 before an exit request).
    /// @return commitment Its corpus commitment.
    /// @return endpoint Its URL.
    function source(uint32 id)
        external
        view
        returns (
            address operator,
            uint256 bond,
            Status status,
            uint64 exitAvailableAt,
            bytes32 commitment,
            string memory endpoint
        );

    /// @notice Beta posterior of a source, prior included, in fixed-point units (mean = alpha / (alpha + beta)).
    /// @param id The source.
    /// @return alpha Positive count.
    /// @return beta Negative count.
    function reliability(uint32 id) external view returns (uint64 alpha, uint64 beta);

    /// @notice What feedback may still move source `id` in the current epoch, each way, in fixed-point units.
    /// @param id The source.
    /// @return positive Positive units left.
    /// @return negative Negative units left.
    function remainingBudget(uint32 id) external view returns (uint16 positive, uint16 negative);

    /// @notice Beta posteriors, statuses and this epoch's remaining budgets of sources `first .. first + count - 1`,
    /// for one-call cache refreshes.
    /// @param first The first id.
    /// @param count How many.
    /// @return alpha Positive counts.
    /// @return beta Negative counts.
    /// @return status Statuses.
    /// @return budgetPositive Positive units left this epoch.
    /// @return budgetNegative Negative units left this epoch.
    function reliabilities(uint32 first, uint32 count)
        external
        view
        returns (
            uint64[] memory alpha,
            uint64[] memory beta,
            Status[] memory status,
            uint16[] memory budgetPositive,
            uint16[] memory budgetNegative
        );

    /// @notice Whether `leaf` (a document hash) belongs to the corpus committed by source `id`.
    /// @param id The source.
    /// @param leaf The document hash.
    /// @param proof Sibling hashes from the leaf up.
    /// @return member True when the proof verifies.
    function verifyDocument(uint32 id, bytes32 leaf, bytes32[] calldata proof) external view returns (bool member);
}
