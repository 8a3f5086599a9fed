// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";

/// @title MarketBase: the storage, constants and shared checks of TrainingMarket's modules
/// @notice Each module (rounds, sealing, disputes, payouts, committee hook, relay) is an abstract contract on this
/// base, as OpenZeppelin's Governor extensions are on Governor; {TrainingMarket} puts them together.
/// @dev What one module needs from another is an internal virtual hook declared here (`_pinSnapshot`,
/// `_slashAttesters`, `_committeeExitDelay`), so the modules do not import each other. Every
/// function acts for `_msgSender()` (OpenZeppelin's Context): the caller, or the signer of a relayed request.
abstract contract MarketBase is ITrainingMarket, ReentrancyGuardTransient, Context {
    /// @notice Basis points denominator of `slashBps`.
    uint16 public constant BPS = 10_000;
    /// @notice Upper bound on `maxTrainers`, so that `finalizeRound` for a full project fits in a block.
    uint16 public constant MAX_TRAINERS = 1_000;
    /// @notice Longest accepted CID (CIDv1 base32 sha2-256 is 59 characters).
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice Where slashed stakes and forfeited bonds go, so nobody profits from a slash or a rejected challenge
    /// (the conventional 0x…dEaD rather than address(0), which dev chains use as the fee recipient).
    address payable public constant BURN_ADDRESS = payable(0x000000000000000000000000000000000000dEaD);
    /// @notice How long the arbiter has to rule on a challenge before anyone may let it lapse.
    uint64 public constant ARBITRATION_PERIOD = 7 days;
    /// @notice Commitments are keccak256 outputs, so none is below this; entries below it are revealed ones.
    uint256 public constant SEALED_FLOOR = 1 << 98;

    /// @notice Number of projects created; ids run 1..projectCount.
    uint256 public projectCount;

    mapping(uint256 projectId => Project) internal _projects;
    mapping(uint256 projectId => mapping(uint16 round => Round)) internal _rounds;
    mapping(uint256 projectId => mapping(address trainer => Trainer)) internal _trainers;
    /// @dev A trainer's entry in a round, one slot: 0 (nothing), its commitment (from `commitUpdate` until the
    /// reveal; commitments are >= SEALED_FLOOR) or, once revealed, REVEALED | flagged << 1 | share << 2.
    mapping(uint256 projectId => mapping(uint16 round => mapping(address trainer => uint256))) internal _entries;
    mapping(uint256 projectId => uint16[]) internal _reversed;
    mapping(uint256 projectId => mapping(address challenger => uint96)) internal _bondRefunds;

    uint256 internal constant REVEALED = 1;

    // ------------------------------------------------------------------ hooks one module offers the others

    /// @dev Fix the committee snapshot of a round just finalized (the committee hook).
    function _pinSnapshot(uint256 projectId, uint16 round) internal virtual;

    /// @dev Slash the members who attested a round an upheld challenge overturned (the committee hook).
    function _slashAttesters(uint256 projectId, uint16 round) internal virtual;

    /// @dev How long a leaving committee member stays slashable (type(uint64).max without a committee).
    function _committeeExitDelay() internal view virtual returns (uint64);

    // ------------------------------------------------------------------------------------- shared checks

    function _checkContent(string calldata cid, bytes32 digest) internal pure {
        uint256 length = bytes(cid).length;
        if (length == 0 || length > MAX_CID_LENGTH || digest == 0) revert InvalidContentReference(cid, digest);
    }

    /// @dev The open round's last second of commits, of reveals, and of aggregation.
    function _schedule(Project storage p)
        internal
        view
        returns (uint64 commitEnd, uint64 revealEnd, uint64 deadline)
    {
        commitEnd = uint64(p.roundOpenedAt) + p.roundDuration;
        revealEnd = commitEnd + p.revealWindow;
        deadline = revealEnd + p.aggregationWindow;
    }

    function _existingProject(uint256 projectId) internal view returns (Project storage p) {
        p = _projects[projectId];
        if (p.status == Status.None) revert UnknownProject(projectId);
    }

    function _activeProject(uint256 projectId) internal view returns (Project storage p) {
        p = _existingProject(projectId);
        if (p.status != Status.Active) revert ProjectNotActive(projectId, p.status);
    }

    /// @dev The active project, with `round` its open round.
    function _openRound(uint256 projectId, uint16 round) internal view returns (Project storage p) {
        p = _activeProject(projectId);
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
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

    /// @dev Ends the project by the liveness rule. The open round's reveals stay as they are: they count as work
    /// for the liveness split (`roundRevealedStake` and each revealer's entry).
    function _cancel(uint256 projectId, Project storage p, CancelReason reason) internal {
        p.status = Status.Cancelled;
        emit ProjectCancelled(projectId, _msgSender(), reason, p.currentRound);
    }
}
