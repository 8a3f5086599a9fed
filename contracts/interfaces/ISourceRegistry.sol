// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title ISourceRegistry: types, events, errors and functions of the dRAG source registry
/// @notice The implementation is {SourceRegistry}: bonded retrieval sources with a Bayesian (Beta) reliability
/// each, written only by the evaluator role as bounded, epoch-numbered feedback batches.
interface ISourceRegistry {
    /// @notice A source's lifecycle.
    enum Status {
        None,
        Active,
        Exiting,
        Withdrawn
    }

    /// @notice A source registered.
    /// @param id Its id.
    /// @param operator Who operates it (and holds its bond).
    /// @param bond The bond locked, in wei.
    /// @param endpoint URL of the source node.
    /// @param commitment Merkle root of its corpus.
    event SourceRegistered(
        uint32 indexed id, address indexed operator, uint256 bond, string endpoint, bytes32 commitment
    );
    /// @notice A source moved to a new endpoint.
    /// @param id The source.
    /// @param endpoint Its new URL.
    event EndpointUpdated(uint32 indexed id, string endpoint);
    /// @notice A source published a new corpus commitment.
    /// @param id The source.
    /// @param commitment The new Merkle root.
    event CommitmentUpdated(uint32 indexed id, bytes32 commitment);
    /// @notice A source stopped serving; its bond can be withdrawn at `availableAt`.
    /// @param id The source.
    /// @param availableAt When `withdrawBond` opens.
    event ExitRequested(uint32 indexed id, uint64 availableAt);
    /// @notice A source's operator took its bond back.
    /// @param id The source.
    /// @param operator The operator.
    /// @param amount The wei sent.
    event BondWithdrawn(uint32 indexed id, address indexed operator, uint256 amount);
    /// @notice One event per batch; `entries` is the packed calldata, so the deltas can be replayed off chain.
    /// @param epoch The batch's epoch.
    /// @param evaluator Who applied it.
    /// @param count The number of entries.
    /// @param entries The packed entries.
    event FeedbackApplied(uint64 indexed epoch, address indexed evaluator, uint256 count, bytes entries);

    /// @notice The bond sent is below `minBond`.
    /// @param sent The wei sent.
    /// @param required The minimum bond.
    error BondTooSmall(uint256 sent, uint256 required);
    /// @notice The bond does not fit in uint96.
    /// @param sent The wei sent.
    error BondTooLarge(uint256 sent);
    /// @notice An empty endpoint URL.
    error EmptyEndpoint();
    /// @notice A zero corpus commitment.
    error ZeroCommitment();
    /// @notice No source has this id.
    /// @param id The id asked for.
    error UnknownSource(uint32 id);
    /// @notice Only the source's operator may do this.
    /// @param id The source.
    /// @param caller Who tried.
    error NotOperator(uint32 id, address caller);
    /// @notice The source is not active.
    /// @param id The source.
    error SourceNotActive(uint32 id);
    /// @notice The source has not requested an exit.
    /// @param id The source.
    error SourceNotExiting(uint32 id);
    /// @notice The exit delay has not passed.
    /// @param id The source.
    /// @param availableAt When `withdrawBond` opens.
    error ExitNotReady(uint32 id, uint64 availableAt);
    /// @notice A batch that does not carry the next epoch number.
    /// @param expected The next epoch.
    /// @param given The epoch given.
    error WrongEpoch(uint64 expected, uint64 given);
    /// @notice A batch without entries.
    error EmptyBatch();
    /// @notice A batch whose length is not a multiple of ENTRY_BYTES.
    /// @param length Its length in bytes.
    error MalformedBatch(uint256 length);
    /// @notice An entry whose delta exceeds `maxDelta`.
    /// @param id The source.
    /// @param positive The positive delta.
    /// @param negative The negative delta.
    error DeltaTooLarge(uint32 id, uint16 positive, uint16 negative);
    /// @notice Entry ids are not strictly ascending.
    /// @param id The entry's id.
    /// @param previous The previous entry's id.
    error UnsortedBatch(uint32 id, uint32 previous);
    /// @notice Constructor parameters out of range (a zero or overlong bond, a zero `maxDelta`).
    error InvalidConfig();

    /// @notice Register a source: lock a bond (msg.value) and publish its endpoint and corpus commitment.
    /// @param endpoint URL of the source node.
    /// @param commitment Merkle root of the source's corpus (sorted-pair keccak, OpenZeppelin MerkleProof).
    /// @return id The new source id.
    function registerSource(string calldata endpoint, bytes32 commitment) external payable returns (uint32 id);

    /// @notice Move an active source to a new endpoint URL.
    /// @param id The source.
    /// @param endpoint Its new URL.
    function updateEndpoint(uint32 id, string calldata endpoint) external;

    /// @notice Publish a new corpus commitment for an active source.
    /// @param id The source.
    /// @param commitment The new Merkle root.
    function updateCommitment(uint32 id, bytes32 commitment) external;

    /// @notice Stop serving; the bond can be withdrawn `exitDelay` seconds later. Feedback still applies.
    /// @param id The source.
    function requestExit(uint32 id) external;

    /// @notice Pull the bond back after the exit delay.
    /// @param id The source.
    function withdrawBond(uint32 id) external;

    /// @notice Apply one batch of reliability feedback.
    /// @param batchEpoch Must be `epoch + 1`.
    /// @param entries Concatenated 8-byte entries `uint32 id | uint16 positive | uint16 negative` (big-endian).
    function applyFeedback(uint64 batchEpoch, bytes calldata entries) external;

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

    /// @notice Beta posterior of a source, prior included, in fixed-point units.
    /// @param id The source.
    /// @return alpha Positive count.
    /// @return beta Negative count.
    function reliability(uint32 id) external view returns (uint64 alpha, uint64 beta);

    /// @notice Beta posteriors and statuses of sources `first .. first + count - 1`.
    /// @param first The first id.
    /// @param count How many.
    /// @return alpha Positive counts.
    /// @return beta Negative counts.
    /// @return status Statuses.
    function reliabilities(uint32 first, uint32 count)
        external
        view
        returns (uint64[] memory alpha, uint64[] memory beta, Status[] memory status);

    /// @notice Whether `leaf` (a document hash) belongs to the corpus committed by source `id`.
    /// @param id The source.
    /// @param leaf The document hash.
    /// @param proof Its Merkle proof.
    /// @return member True when the proof verifies.
    function verifyDocument(uint32 id, bytes32 leaf, bytes32[] calldata proof) external view returns (bool member);
}
