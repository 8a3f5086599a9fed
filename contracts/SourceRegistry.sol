// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ISourceRegistry} from "./interfaces/ISourceRegistry.sol";

/// @title SourceRegistry
/// @notice Registry of retrieval sources for decentralized RAG, with a Bayesian (Beta) reliability per source.
/// @dev Follows the idea of Reliable-dRAG ("A Decentralized Retrieval Augmented Generation System with Source
/// Reliabilities Secured on Blockchain") and closes its holes: registration needs a bond; only the evaluator
/// role writes reliability; feedback is a bounded *delta* (never an absolute overwrite, so concurrent updates
/// add up); every batch carries the next epoch number (no replay); a new source starts from a pessimistic
/// prior with low confidence (no whitewashing); and a whole batch is one transaction whose entries each touch
/// one packed storage slot (~5k gas per source instead of ~31k).
/// Counts are fixed point: `SCALE` units are one observation, so fractional contributions can be recorded.
contract SourceRegistry is ISourceRegistry, AccessControl, ReentrancyGuard {
    using Address for address payable;

    /// @notice Role allowed to apply feedback batches.
    bytes32 public constant EVALUATOR_ROLE = keccak256("EVALUATOR_ROLE");
    /// @notice Fixed-point units per observation in the Beta counts.
    uint64 public constant SCALE = 1000;
    /// @notice Prior positive count of every source (one observation).
    uint64 public constant PRIOR_POSITIVE = 1 * SCALE;
    /// @notice Prior negative count of every source (four observations): a newcomer's mean is 0.2, below any
    /// established good record, so exiting and re-registering never pays.
    uint64 public constant PRIOR_NEGATIVE = 4 * SCALE;
    /// @notice Bytes per feedback entry: uint32 sourceId | uint16 positive | uint16 negative, big-endian.
    uint256 public constant ENTRY_BYTES = 8;

    /// @dev Everything a feedback batch reads and writes for one source, packed into one slot.
    struct Reputation {
        uint64 positive;
        uint64 negative;
        Status status;
    }

    struct Source {
        address operator;
        uint96 bond;
        uint64 exitAvailableAt;
        bytes32 commitment;
        string endpoint;
    }

    /// @notice Smallest bond accepted by `registerSource`, in wei.
    uint256 public immutable minBond;
    /// @notice Seconds between `requestExit` and `withdrawBond`.
    uint64 public immutable exitDelay;
    /// @notice Largest positive or negative delta one batch entry may carry, in fixed-point units.
    uint16 public immutable maxDelta;

    /// @notice Number of registered sources; ids run from 1 to `sourceCount`.
    uint32 public sourceCount;
    /// @notice Number of feedback batches applied; the next batch must carry `epoch + 1`.
    uint64 public epoch;

    mapping(uint32 id => Reputation) private _reputation;
    mapping(uint32 id => Source) private _sources;

    /// @param minBond_ Smallest bond a source must lock, in wei (non-zero: registration must cost something).
    /// @param exitDelay_ Seconds a leaving source keeps its bond locked (so feedback on its last answers lands).
    /// @param maxDelta_ Largest per-entry delta, in fixed-point units (bounds what one batch can do).
    constructor(uint256 minBond_, uint64 exitDelay_, uint16 maxDelta_) {
        if (minBond_ == 0 || minBond_ > type(uint96).max || maxDelta_ == 0) revert InvalidConfig();
        minBond = minBond_;
        exitDelay = exitDelay_;
        maxDelta = maxDelta_;
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
    }

    /// @inheritdoc ISourceRegistry
    function registerSource(string calldata endpoint, bytes32 commitment) external payable returns (uint32 id) {
        if (msg.value < minBond) revert BondTooSmall(msg.value, minBond);
        if (msg.value > type(uint96).max) revert BondTooLarge(msg.value);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        if (commitment == bytes32(0)) revert ZeroCommitment();
        id = ++sourceCount;
        _sources[id] = Source({
            operator: msg.sender,
            bond: uint96(msg.value),
            exitAvailableAt: 0,
            commitment: commitment,
            endpoint: endpoint
        });
        _reputation[id] = Reputation({positive: 0, negative: 0, status: Status.Active});
        emit SourceRegistered(id, msg.sender, msg.value, endpoint, commitment);
    }

    /// @inheritdoc ISourceRegistry
    function updateEndpoint(uint32 id, string calldata endpoint) external {
        _requireActiveOperator(id);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        _sources[id].endpoint = endpoint;
        emit EndpointUpdated(id, endpoint);
    }

    /// @inheritdoc ISourceRegistry
    /// @dev The source keeps its record.
    function updateCommitment(uint32 id, bytes32 commitment) external {
        _requireActiveOperator(id);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        _sources[id].commitment = commitment;
        emit CommitmentUpdated(id, commitment);
    }

    /// @inheritdoc ISourceRegistry
    function requestExit(uint32 id) external {
        _requireActiveOperator(id);
        uint64 availableAt = uint64(block.timestamp) + exitDelay;
        _reputation[id].status = Status.Exiting;
        _sources[id].exitAvailableAt = availableAt;
        emit ExitRequested(id, availableAt);
    }

    /// @inheritdoc ISourceRegistry
    function withdrawBond(uint32 id) external nonReentrant {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        if (s.operator != msg.sender) revert NotOperator(id, msg.sender);
        if (_reputation[id].status != Status.Exiting) revert SourceNotExiting(id);
        if (block.timestamp < s.exitAvailableAt) revert ExitNotReady(id, s.exitAvailableAt);
        uint256 amount = s.bond;
        // Effects before the interaction: a re-entrant call finds the bond gone and the status Withdrawn.
        s.bond = 0;
        _reputation[id].status = Status.Withdrawn;
        emit BondWithdrawn(id, msg.sender, amount);
        payable(msg.sender).sendValue(amount);
    }

    /// @inheritdoc ISourceRegistry
    /// @dev A batch applies once, in order (a stale or replayed epoch reverts); each delta is at most
    /// `maxDelta` and ids are strictly ascending, so one batch moves a source by at most `maxDelta` each way;
    /// calldata keeps a batch of 50 at 400 bytes.
    function applyFeedback(uint64 batchEpoch, bytes calldata entries) external onlyRole(EVALUATOR_ROLE) {
        uint64 expected = epoch + 1;
        if (batchEpoch != expected) revert WrongEpoch(expected, batchEpoch);
        uint256 length = entries.length;
        if (length == 0) revert EmptyBatch();
        if (length % ENTRY_BYTES != 0) revert MalformedBatch(length);
        uint16 bound = maxDelta;
        uint32 previous = 0;
        epoch = expected;
        for (uint256 offset = 0; offset < length; offset += ENTRY_BYTES) {
            uint64 word = uint64(bytes8(entries[offset:offset + ENTRY_BYTES]));
            uint32 id = uint32(word >> 32);
            uint16 positive = uint16(word >> 16);
            uint16 negative = uint16(word);
            if (id <= previous) revert UnsortedBatch(id, previous);
            previous = id;
            if (positive > bound || negative > bound) revert DeltaTooLarge(id, positive, negative);
            Reputation storage rep = _reputation[id];
            if (rep.status == Status.None) revert UnknownSource(id);
            // Deltas add up: two batches built concurrently both count; uint64 cannot overflow at 65535 a batch.
            rep.positive += positive;
            rep.negative += negative;
        }
        emit FeedbackApplied(expected, msg.sender, length / ENTRY_BYTES, entries);
    }

    /// @inheritdoc ISourceRegistry
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
        )
    {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        return (s.operator, s.bond, _reputation[id].status, s.exitAvailableAt, s.commitment, s.endpoint);
    }

    /// @inheritdoc ISourceRegistry
    function reliability(uint32 id) public view returns (uint64 alpha, uint64 beta) {
        Reputation storage rep = _reputation[id];
        if (rep.status == Status.None) revert UnknownSource(id);
        return (PRIOR_POSITIVE + rep.positive, PRIOR_NEGATIVE + rep.negative);
    }

    /// @inheritdoc ISourceRegistry
    function reliabilities(uint32 first, uint32 count)
        external
        view
        returns (uint64[] memory alpha, uint64[] memory beta, Status[] memory status)
    {
        alpha = new uint64[](count);
        beta = new uint64[](count);
        status = new Status[](count);
        for (uint32 i = 0; i < count; ++i) {
            (alpha[i], beta[i]) = reliability(first + i);
            status[i] = _reputation[first + i].status;
        }
    }

    /// @inheritdoc ISourceRegistry
    function verifyDocument(uint32 id, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        return MerkleProof.verifyCalldata(proof, s.commitment, leaf);
    }

    function _requireActiveOperator(uint32 id) private view {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        if (s.operator != msg.sender) revert NotOperator(id, msg.sender);
        if (_reputation[id].status != Status.Active) revert SourceNotActive(id);
    }
}
