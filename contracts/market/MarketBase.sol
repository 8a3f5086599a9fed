// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";

/// @title MarketBase: the storage, constants and shared checks of TrainingMarket's modules
/// @notice Each module (rounds, disputes, payouts, committee hook, relay) is an abstract contract on this base,
/// as OpenZeppelin's Governor extensions are on Governor; {TrainingMarket} puts them together.
/// @dev What one module needs from another is an internal virtual hook declared here (`_isAttested`,
/// `_pinSnapshot`, `_submitUpdate`), so the modules do not import each other.
abstract contract MarketBase is ITrainingMarket, ReentrancyGuardTransient {
    /// @notice Basis points denominator of `slashBps`.
    uint16 public constant BPS = 10_000;
    /// @notice Upper bound on `maxTrainers`, so that `finalizeRound` for a full project fits in a block.
    uint16 public constant MAX_TRAINERS = 1_000;
    /// @notice Longest accepted CID (CIDv1 base32 sha2-256 is 59 characters).
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice Where slashed stakes and forfeited bonds go, so nobody profits from a slash or a rejected challenge
    /// (the conventional 0x…dEaD rather than address(0), which dev chains use as the fee recipient).
    address payable public constant BURN_ADDRESS = payable(0x000000000000000000000000000000000000dEaD);

    /// @notice Number of projects created; ids run 1..projectCount.
    uint256 public projectCount;

    mapping(uint256 projectId => Project) internal _projects;
    mapping(uint256 projectId => mapping(uint16 round => Round)) internal _rounds;
    mapping(uint256 projectId => mapping(address trainer => Trainer)) internal _trainers;
    mapping(uint256 projectId => mapping(uint16 round => mapping(address trainer => Submission))) internal
        _submissions;
    mapping(uint256 projectId => uint16[]) internal _reversed;
    mapping(uint256 projectId => mapping(address challenger => uint96)) internal _bondRefunds;

    // ------------------------------------------------------------------ hooks one module offers the others

    /// @dev Whether the committee attests the round's current result (the committee hook).
    function _isAttested(uint256 projectId, uint16 round) internal view virtual returns (bool);

    /// @dev Fix the committee snapshot of a round just finalized (the committee hook).
    function _pinSnapshot(uint256 projectId, uint16 round) internal virtual;

    /// @dev Record `trainer`'s update for the open round (the rounds module; the relay calls it).
    function _submitUpdate(address trainer, uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest)
        internal
        virtual;

    // ------------------------------------------------------------------------------------- shared checks

    function _checkContent(string calldata cid, bytes32 digest) internal pure {
        uint256 length = bytes(cid).length;
        if (length == 0 || length > MAX_CID_LENGTH || digest == 0) revert InvalidContentReference(cid, digest);
    }

    function _windowEnd(Project storage p) internal view returns (uint64) {
        return p.roundOpenedAt + p.roundDuration;
    }

    function _existingProject(uint256 projectId) internal view returns (Project storage p) {
        p = _projects[projectId];
        if (p.status == Status.None) revert UnknownProject(projectId);
    }

    function _activeProject(uint256 projectId) internal view returns (Project storage p) {
        p = _existingProject(projectId);
        if (p.status != Status.Active) revert ProjectNotActive(projectId, p.status);
    }

    function _roundPool(Project storage p, uint16 round) internal view returns (uint96) {
        uint96 perRound = p.pool / p.rounds;
        // The division remainder rides on the last round, so trainers (not the owner) receive it.
        return round + 1 == p.rounds ? perRound + (p.pool % p.rounds) : perRound;
    }

    function _toAmount(uint256 value) internal pure returns (uint96) {
        if (value > type(uint96).max) revert AmountTooLarge(value);
        return uint96(value);
    }

    /// @dev Ends the project by the liveness rule. The open round's submissions count as work for the payout.
    function _cancel(uint256 projectId, Project storage p, CancelReason reason) internal {
        p.totalSubmissions += p.roundSubmissions;
        p.roundSubmissions = 0;
        p.status = Status.Cancelled;
        emit ProjectCancelled(projectId, msg.sender, reason, p.currentRound);
    }
}
