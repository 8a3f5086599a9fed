// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ISourceRegistry} from "./interfaces/ISourceRegistry.sol";

/// @title SourceRegistry
/// @notice Registry of retrieval sources for decentralized RAG, with a Bayesian (Beta) reliability per source.
/// @dev Follows Reliable-dRAG ("A Decentralized Retrieval Augmented Generation System with Source Reliabilities
/// Secured on Blockchain") and closes its holes, and those an organized attacker would use:
/// - Sybils cost money: an operator's n-th live source locks n times `minBond`, a corpus can be registered only
///   once while its holder lives, and a bond is burned in part when revealed canaries show the source tampered.
/// - A record is bound to its corpus and endpoint: re-registering either inherits the old record (the worse one
///   when they differ), and a new commitment keeps the mean but cuts the evidence to the prior's weight.
/// - Feedback is bounded *deltas* (never absolute overwrites), in numbered batches (no replay), moving a source
///   at most `maxDelta` each way per epoch whoever sends them, so neither one evaluator nor many batches can run
///   a record away; evidence is capped at `maxEvidence` (exponential forgetting), so a source that turns is
///   caught in tens of observations, not hundreds.
/// - Ground truth: evaluators commit to an epoch's canary questions before it starts and reveal them after it
///   ends, so anyone can check the canary scores and slashes.
/// A newcomer starts from a pessimistic prior, Beta(1, 4), below any established good record (no whitewashing).
/// A batch entry touches one packed storage slot of its source.
contract SourceRegistry is ISourceRegistry, AccessControl, ReentrancyGuardTransient {
    using Address for address payable;

    /// @notice Role allowed to apply feedback, commit and reveal canaries, and slash.
    bytes32 public constant EVALUATOR_ROLE = keccak256("EVALUATOR_ROLE");
    /// @notice Fixed-point units per observation in the Beta counts.
    uint64 public constant SCALE = 1000;
    /// @notice Prior alpha of every new source (one observation).
    uint64 public constant PRIOR_POSITIVE = 1 * SCALE;
    /// @notice Prior beta of every new source (four observations): a newcomer's mean is 0.2.
    uint64 public constant PRIOR_NEGATIVE = 4 * SCALE;
    /// @notice Bytes per feedback entry: uint32 sourceId | uint16 positive | uint16 negative, big-endian.
    uint256 public constant ENTRY_BYTES = 8;
    /// @notice Where burned (slashed) wei goes.
    address payable public constant BURN_ADDRESS = payable(0x000000000000000000000000000000000000dEaD);

    /// @dev Everything a feedback batch reads and writes for one source, packed into one slot (200 bits).
    struct Reputation {
        uint64 alpha;
        uint64 beta;
        uint32 budgetEpoch; // the epoch `spentPositive` / `spentNegative` belong to
        uint16 spentPositive;
        uint16 spentNegative;
        Status status;
    }

    struct Source {
        address operator;
        uint96 bond;
        uint64 exitAvailableAt;
        uint64 lastSlashedEpoch; // epoch + 1 of the last slash, 0 for never
        bytes32 commitment;
        string endpoint;
    }

    /// @notice Bond of an operator's first live source, in wei; the n-th locks n times as much.
    uint256 public immutable minBond;
    /// @notice Seconds between `requestExit` and `withdrawBond`.
    uint64 public immutable exitDelay;
    /// @notice Largest positive (and negative) movement of one source per epoch, all batches together.
    uint16 public immutable maxDelta;
    /// @notice Seconds per epoch.
    uint32 public immutable epochLength;
    /// @notice Largest alpha + beta a record keeps; older evidence is scaled down past it.
    uint64 public immutable maxEvidence;
    /// @notice Basis points of a source's bond burned per tampered canary.
    uint16 public immutable slashBps;
    /// @notice Deployment time: epoch 0 starts here.
    uint64 public immutable genesis;

    /// @notice Number of registered sources; ids run from 1 to `sourceCount`.
    uint32 public sourceCount;
    /// @notice Number of feedback batches applied; the next batch must carry `batches + 1`.
    uint64 public batches;
    /// @notice Live sources per operator (what prices its next bond).
    mapping(address operator => uint32) public activeSources;
    /// @notice The latest source registered with (or moved to) a corpus commitment.
    mapping(bytes32 commitment => uint32) public sourceOfCommitment;
    /// @notice The latest source registered at (or moved to) an endpoint, by keccak256 of the URL.
    mapping(bytes32 endpointHash => uint32) public sourceOfEndpoint;

    mapping(uint32 id => Reputation) private _reputation;
    mapping(uint32 id => Source) private _sources;
    mapping(address evaluator => mapping(uint64 epoch => CanarySet)) private _canaries;

    /// @param minBond_ Bond of an operator's first source, in wei (non-zero: registration must cost something).
    /// @param exitDelay_ Seconds a leaving source keeps its bond locked (so feedback and slashes on its last
    ///        answers land).
    /// @param maxDelta_ Largest movement of one source per epoch each way, in fixed-point units.
    /// @param epochLength_ Seconds per epoch (non-zero).
    /// @param maxEvidence_ Largest alpha + beta a record keeps, in fixed-point units (above the prior's).
    /// @param slashBps_ Basis points of the bond burned per tampered canary (at most 10,000).
    constructor(
        uint256 minBond_,
        uint64 exitDelay_,
        uint16 maxDelta_,
        uint32 epochLength_,
        uint64 maxEvidence_,
        uint16 slashBps_
    ) {
        if (
            minBond_ == 0 || minBond_ > type(uint96).max || maxDelta_ == 0 || epochLength_ == 0
                || maxEvidence_ <= PRIOR_POSITIVE + PRIOR_NEGATIVE || maxEvidence_ > type(uint64).max / 2
                || slashBps_ > 10_000
        ) revert InvalidConfig();
        minBond = minBond_;
        exitDelay = exitDelay_;
        maxDelta = maxDelta_;
        epochLength = epochLength_;
        maxEvidence = maxEvidence_;
        slashBps = slashBps_;
        genesis = uint64(block.timestamp);
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
    }

    // -- sources -------------------------------------------------------------------------------------------------

    /// @inheritdoc ISourceRegistry
    function registerSource(string calldata endpoint, bytes32 commitment) external payable returns (uint32 id) {
        uint256 required = requiredBond(msg.sender);
        if (msg.value < required) revert BondTooSmall(msg.value, required);
        if (msg.value > type(uint96).max) revert BondTooLarge(msg.value);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        if (commitment == bytes32(0)) revert ZeroCommitment();
        bytes32 endpointHash = keccak256(bytes(endpoint));
        uint32 byCommitment = sourceOfCommitment[commitment];
        if (byCommitment != 0 && _live(byCommitment)) revert CommitmentTaken(commitment, byCommitment);
        uint32 byEndpoint = sourceOfEndpoint[endpointHash];
        if (byEndpoint != 0 && _live(byEndpoint)) revert EndpointTaken(endpoint, byEndpoint);
        id = ++sourceCount;
        uint32 inherited = _worse(byCommitment, byEndpoint);
        Reputation memory rep = inherited == 0
            ? Reputation(PRIOR_POSITIVE, PRIOR_NEGATIVE, 0, 0, 0, Status.Active)
            : _reputation[inherited];
        rep.status = Status.Active;
        _reputation[id] = rep;
        _sources[id] = Source({
            operator: msg.sender,
            bond: uint96(msg.value),
            exitAvailableAt: 0,
            lastSlashedEpoch: 0,
            commitment: commitment,
            endpoint: endpoint
        });
        sourceOfCommitment[commitment] = id;
        sourceOfEndpoint[endpointHash] = id;
        ++activeSources[msg.sender];
        emit SourceRegistered(id, msg.sender, msg.value, endpoint, commitment, inherited);
    }

    /// @inheritdoc ISourceRegistry
    function updateEndpoint(uint32 id, string calldata endpoint) external {
        _requireActiveOperator(id);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        bytes32 endpointHash = keccak256(bytes(endpoint));
        uint32 holder = sourceOfEndpoint[endpointHash];
        if (holder != 0 && holder != id && _live(holder)) revert EndpointTaken(endpoint, holder);
        _sources[id].endpoint = endpoint;
        sourceOfEndpoint[endpointHash] = id;
        emit EndpointUpdated(id, endpoint);
    }

    /// @inheritdoc ISourceRegistry
    function updateCommitment(uint32 id, bytes32 commitment) external {
        _requireActiveOperator(id);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        uint32 holder = sourceOfCommitment[commitment];
        if (holder != 0 && holder != id && _live(holder)) revert CommitmentTaken(commitment, holder);
        Reputation storage rep = _reputation[id];
        uint64 total = rep.alpha + rep.beta;
        uint64 reset = PRIOR_POSITIVE + PRIOR_NEGATIVE;
        if (total > reset) {
            uint64 alpha = uint64((uint256(rep.alpha) * reset) / total);
            rep.alpha = alpha;
            rep.beta = reset - alpha;
        }
        if (holder != 0 && holder != id && _worse(holder, id) == holder) {
            // A corpus that a withdrawn source with a worse record held brings that record back.
            Reputation memory old = _reputation[holder];
            (rep.alpha, rep.beta) = (old.alpha, old.beta);
        }
        _sources[id].commitment = commitment;
        sourceOfCommitment[commitment] = id;
        emit CommitmentUpdated(id, commitment, rep.alpha, rep.beta);
    }

    /// @inheritdoc ISourceRegistry
    function requestExit(uint32 id) external {
        _requireActiveOperator(id);
        _startExit(id);
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

    // -- feedback ------------------------------------------------------------------------------------------------

    /// @inheritdoc ISourceRegistry
    function applyFeedback(uint64 batch, bytes calldata entries) external onlyRole(EVALUATOR_ROLE) {
        uint64 expected = batches + 1;
        if (batch != expected) revert WrongBatch(expected, batch);
        uint256 length = entries.length;
        if (length == 0) revert EmptyBatch();
        if (length % ENTRY_BYTES != 0) revert MalformedBatch(length);
        uint32 epoch = uint32(currentEpoch());
        uint256 bound = maxDelta;
        uint256 cap = maxEvidence;
        uint32 previous = 0;
        batches = expected;
        for (uint256 offset = 0; offset < length; offset += ENTRY_BYTES) {
            uint64 word = uint64(bytes8(entries[offset:offset + ENTRY_BYTES]));
            uint32 id = uint32(word >> 32);
            if (id <= previous) revert UnsortedBatch(id, previous);
            previous = id;
            Reputation memory r = _reputation[id];
            if (r.status == Status.None) revert UnknownSource(id);
            uint256 positive = uint16(word >> 16);
            uint256 negative = uint16(word);
            if (r.budgetEpoch == epoch) {
                positive += r.spentPositive;
                negative += r.spentNegative;
            }
            if (positive > bound || negative > bound) revert EpochBudgetExceeded(id, epoch, positive, negative);
            uint256 alpha = r.alpha + uint16(word >> 16);
            uint256 beta = r.beta + uint16(word);
            if (alpha + beta > cap) {
                // Forget old evidence in proportion: the record keeps its mean and at most `cap` units.
                uint256 scaled = (alpha * cap) / (alpha + beta);
                (alpha, beta) = (scaled, cap - scaled);
            }
            // One write of the whole slot.
            _reputation[id] =
                Reputation(uint64(alpha), uint64(beta), epoch, uint16(positive), uint16(negative), r.status);
        }
        emit FeedbackApplied(expected, epoch, msg.sender, length / ENTRY_BYTES, entries);
    }

    // -- canaries and slashing ---------------------------------------------------------------------------------

    /// @inheritdoc ISourceRegistry
    function commitCanaries(uint64 epoch, bytes32 commitment, uint16 count) external onlyRole(EVALUATOR_ROLE) {
        uint64 current = currentEpoch();
        if (epoch <= current) revert EpochNotInFuture(epoch, current);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        CanarySet storage set = _canaries[msg.sender][epoch];
        if (set.commitment != bytes32(0)) revert CanariesAlreadyCommitted(epoch);
        (set.commitment, set.count) = (commitment, count);
        emit CanariesCommitted(epoch, msg.sender, commitment, count);
    }

    /// @inheritdoc ISourceRegistry
    function revealCanaries(uint64 epoch, bytes32 salt, bytes calldata canaries) external {
        uint64 current = currentEpoch();
        if (epoch >= current) revert EpochNotOver(epoch, current);
        CanarySet storage set = _canaries[msg.sender][epoch];
        if (set.commitment == bytes32(0)) revert NoCanaries(epoch);
        if (set.revealed) revert CanariesAlreadyRevealed(epoch);
        if (canaryCommitment(msg.sender, epoch, salt, set.count, canaries) != set.commitment) {
            revert CanaryMismatch(epoch);
        }
        set.revealed = true;
        emit CanariesRevealed(epoch, msg.sender, salt, canaries);
    }

    /// @inheritdoc ISourceRegistry
    function slash(uint32 id, uint64 epoch, uint16 failures, bytes32 evidence)
        external
        onlyRole(EVALUATOR_ROLE)
        nonReentrant
    {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        CanarySet storage set = _canaries[msg.sender][epoch];
        if (!set.revealed) revert CanariesNotRevealed(epoch);
        if (failures == 0 || failures > set.count) revert BadFailureCount(failures, set.count);
        if (s.lastSlashedEpoch > epoch) revert AlreadySlashed(id, epoch);
        uint256 fraction = uint256(failures) * slashBps;
        uint256 amount = fraction >= 10_000 ? s.bond : (uint256(s.bond) * fraction) / 10_000;
        s.bond -= uint96(amount);
        s.lastSlashedEpoch = epoch + 1;
        emit SourceSlashed(id, epoch, msg.sender, amount, failures, evidence);
        if (amount != 0) BURN_ADDRESS.sendValue(amount);
    }

    // -- views ---------------------------------------------------------------------------------------------------

    /// @inheritdoc ISourceRegistry
    function currentEpoch() public view returns (uint64) {
        return (uint64(block.timestamp) - genesis) / epochLength;
    }

    /// @inheritdoc ISourceRegistry
    function requiredBond(address operator) public view returns (uint256) {
        return minBond * (uint256(activeSources[operator]) + 1);
    }

    /// @inheritdoc ISourceRegistry
    function canaryCommitment(address evaluator, uint64 epoch, bytes32 salt, uint16 count, bytes calldata canaries)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), evaluator, epoch, salt, count, keccak256(canaries)));
    }

    /// @inheritdoc ISourceRegistry
    function canaries(address evaluator, uint64 epoch) external view returns (CanarySet memory) {
        return _canaries[evaluator][epoch];
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
        return (rep.alpha, rep.beta);
    }

    /// @inheritdoc ISourceRegistry
    function remainingBudget(uint32 id) public view returns (uint16 positive, uint16 negative) {
        Reputation storage rep = _reputation[id];
        if (rep.status == Status.None) revert UnknownSource(id);
        if (rep.budgetEpoch != uint32(currentEpoch())) return (maxDelta, maxDelta);
        return (maxDelta - rep.spentPositive, maxDelta - rep.spentNegative);
    }

    /// @inheritdoc ISourceRegistry
    function reliabilities(uint32 first, uint32 count)
        external
        view
        returns (
            uint64[] memory alpha,
            uint64[] memory beta,
            Status[] memory status,
            uint16[] memory budgetPositive,
            uint16[] memory budgetNegative
        )
    {
        alpha = new uint64[](count);
        beta = new uint64[](count);
        status = new Status[](count);
        budgetPositive = new uint16[](count);
        budgetNegative = new uint16[](count);
        for (uint32 i = 0; i < count; ++i) {
            (alpha[i], beta[i]) = reliability(first + i);
            status[i] = _reputation[first + i].status;
            (budgetPositive[i], budgetNegative[i]) = remainingBudget(first + i);
        }
    }

    /// @inheritdoc ISourceRegistry
    function verifyDocument(uint32 id, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        return MerkleProof.verifyCalldata(proof, s.commitment, leaf);
    }

    // -- internals -----------------------------------------------------------------------------------------------

    function _startExit(uint32 id) private {
        uint64 availableAt = uint64(block.timestamp) + exitDelay;
        _reputation[id].status = Status.Exiting;
        _sources[id].exitAvailableAt = availableAt;
        --activeSources[_sources[id].operator];
        emit ExitRequested(id, availableAt);
    }

    /// @dev A live source (Active or Exiting) still holds its corpus and endpoint.
    function _live(uint32 id) private view returns (bool) {
        Status status = _reputation[id].status;
        return status == Status.Active || status == Status.Exiting;
    }

    /// @dev Of two sources (0 = none), the one with the lower mean; ties go to `a`.
    function _worse(uint32 a, uint32 b) private view returns (uint32) {
        if (a == 0) return b;
        if (b == 0) return a;
        Reputation storage ra = _reputation[a];
        Reputation storage rb = _reputation[b];
        // alpha_a / (alpha_a + beta_a) <= alpha_b / (alpha_b + beta_b), cross-multiplied.
        uint256 left = uint256(ra.alpha) * (uint256(rb.alpha) + rb.beta);
        uint256 right = uint256(rb.alpha) * (uint256(ra.alpha) + ra.beta);
        return left <= right ? a : b;
    }

    function _requireActiveOperator(uint32 id) private view {
        Source storage s = _sources[id];
        if (s.operator == address(0)) revert UnknownSource(id);
        if (s.operator != msg.sender) revert NotOperator(id, msg.sender);
        if (_reputation[id].status != Status.Active) revert SourceNotActive(id);
    }
}
