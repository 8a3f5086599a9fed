// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {BN254} from "./lib/BN254.sol";
import {CodeStore} from "./lib/CodeStore.sol";
import {CommitteeTable} from "./lib/CommitteeTable.sol";
import {IRoundAttestor} from "./interfaces/IRoundAttestor.sol";
import {IRoundResultSource} from "./interfaces/IRoundResultSource.sol";
import {IVerifierCommittee} from "./interfaces/IVerifierCommittee.sol";

/// @title VerifierCommittee
/// @notice A staked, admitted committee of independent verifiers who recompute training rounds and attest to their
///         result digests with one aggregated BLS signature on BN254. A round counts as attested once signers
///         holding at least 2/3 of the committee's weight, as of the round's snapshot, signed the digest the
///         market stores for it. Membership is by admission (ADMISSION_ROLE, held by the deployer: one seat per
///         admission), a member's weight is its stake capped at `maxWeight`, and the members who attested a
///         result that a challenge overturns lose their whole stake (the market, holding MARKET_ROLE, says so).
/// @dev BLS (Boneh-Lynn-Shacham 2001) with signatures in G1 and keys in G2, rogue keys excluded by proof of
///      possession (Ristenpart-Yilek 2007), and EigenLayer's trick for the G2 aggregate key: the caller supplies
///      the signers' G2 key sum, the contract adds their G1 keys and one pairing call checks the signature and
///      the sum together (`BN254.verifyWithG1Key`). The committee of every epoch (keys, weights, addresses and
///      the sum of all keys) is an immutable `CodeStore` blob, so an attestation reads it with one EXTCODECOPY,
///      and adds the signers' keys or, when most signed, subtracts the others' from the sum: at most n/2 ecAdds.
///      A round's snapshot is the epoch current when it is first pinned (`pinSnapshot`, or `attest` itself);
///      `attestWindow = exitDelay / 2` keeps every member of a pinned epoch staked until its window has closed.
contract VerifierCommittee is IVerifierCommittee, AccessControl, ReentrancyGuard {
    using Address for address payable;
    using BN254 for BN254.G1Point;

    /// @notice Domain tag of attestation signatures (hashed with sha256 into `ATTEST_TAG`).
    string public constant DST_ATTEST = "TRUSTMARKET-V1-BN254G1-SHA256-TAI-ATTEST";
    /// @notice Domain tag of proofs of possession (hashed with sha256 into `POP_TAG`).
    string public constant DST_POP = "TRUSTMARKET-V1-BN254G1-SHA256-TAI-POP";
    /// @notice Most members at once. Bitmaps are uint256 and 255 entries would fill a CodeStore blob (EIP-170);
    ///         128 keeps an attestation (one ~0.5k-gas ecAdd per signer on top of ~150k) near the gas goal.
    uint256 public constant MAX_COMMITTEE_SIZE = 128;
    /// @notice Signers must hold at least QUORUM_NUMERATOR / QUORUM_DENOMINATOR of the snapshot's weight.
    uint256 public constant QUORUM_NUMERATOR = 2;
    uint256 public constant QUORUM_DENOMINATOR = 3;
    /// @notice The role that admits verifiers (`admit`, `revokeAdmission`).
    bytes32 public constant ADMISSION_ROLE = keccak256("ADMISSION_ROLE");
    /// @notice The role of a market whose overturned rounds slash their attesters (`slashAttesters`).
    bytes32 public constant MARKET_ROLE = keccak256("MARKET_ROLE");
    /// @notice Where slashed stakes go, so nobody profits from a slash.
    address payable public constant BURN_ADDRESS = payable(0x000000000000000000000000000000000000dEaD);

    /// @notice sha256(DST_ATTEST) and sha256(DST_POP), the tags `BN254.hashToG1` takes.
    bytes32 public immutable ATTEST_TAG;
    bytes32 public immutable POP_TAG;
    /// @notice Smallest stake `register` accepts, in wei.
    uint256 public immutable minStake;
    /// @notice The most weight one member carries in a quorum, whatever its stake (its stake stays slashable).
    uint96 public immutable maxWeight;
    /// @notice Seconds between `requestExit` and `withdraw`: how long a leaving member stays slashable.
    uint64 public immutable exitDelay;
    /// @notice Seconds after a round's snapshot is pinned during which it can be attested: half the exit delay,
    ///         so every member of a pinned snapshot is still staked when its window closes.
    uint64 public immutable attestWindow;

    /// @notice Verifier records by address.
    mapping(address verifier => Verifier) public verifiers;
    /// @notice G1 keys ever registered (keccak256 of the point): a key is never reused, even after exit.
    mapping(bytes32 keyHash => bool) public keyUsed;
    /// @notice Accounts admitted and not yet seated (an admission is used up by `register`).
    mapping(address verifier => bool) public admitted;
    Epoch[] private _epochs;
    mapping(address verifier => BN254.G2Point) private _keysG2;
    mapping(bytes32 roundKey => RoundRecord) private _rounds;

    /// @param admin Holds DEFAULT_ADMIN_ROLE and ADMISSION_ROLE (grants MARKET_ROLE to the market it deploys).
    /// @param minStake_ Smallest stake `register` accepts, in wei (positive).
    /// @param maxWeight_ The per-member weight cap, in wei of stake (at least `minStake_`).
    /// @param exitDelay_ Seconds between `requestExit` and `withdraw` (at least 2; attestations get half of it).
    constructor(address admin, uint256 minStake_, uint96 maxWeight_, uint64 exitDelay_) {
        if (admin == address(0) || minStake_ == 0 || maxWeight_ < minStake_ || exitDelay_ < 2) revert InvalidConfig();
        minStake = minStake_;
        maxWeight = maxWeight_;
        exitDelay = exitDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ADMISSION_ROLE, admin);
        attestWindow = exitDelay_ / 2;
        ATTEST_TAG = sha256(bytes(DST_ATTEST));
        POP_TAG = sha256(bytes(DST_POP));
        _epochs.push(Epoch(address(0), 0, uint64(block.timestamp), 0));
        emit EpochStarted(0, address(0), 0, 0);
    }

    // ---- membership ---------------------------------------------------------------------------------------

    /// @inheritdoc IVerifierCommittee
    function admit(address verifier) external onlyRole(ADMISSION_ROLE) {
        admitted[verifier] = true;
        emit VerifierAdmitted(verifier, msg.sender);
    }

    /// @inheritdoc IVerifierCommittee
    function revokeAdmission(address verifier) external onlyRole(ADMISSION_ROLE) {
        if (!admitted[verifier]) revert NotAdmitted(verifier);
        admitted[verifier] = false;
        emit AdmissionRevoked(verifier, msg.sender);
    }

    /// @inheritdoc IVerifierCommittee
    function register(BN254.G1Point calldata pkG1, BN254.G2Point calldata pkG2, BN254.G1Point calldata proof)
        external
        payable
    {
        if (verifiers[msg.sender].status != Status.None) revert VerifierAlreadyRegistered(msg.sender);
        if (!admitted[msg.sender]) revert NotAdmitted(msg.sender);
        if (msg.value < minStake) revert VerifierStakeTooLow(msg.value, minStake);
        Epoch storage current = _epochs[_epochs.length - 1];
        if (current.size >= MAX_COMMITTEE_SIZE) revert CommitteeFull(current.size);
        if (BN254.isInfinity(pkG1) || BN254.isInfinity(pkG2)) revert InvalidPublicKey();
        bytes32 keyHash = keccak256(abi.encode(pkG1.x, pkG1.y));
        if (keyUsed[keyHash]) revert KeyAlreadyRegistered(keyHash);
        BN254.G1Point memory h = BN254.hashToG1(POP_TAG, possessionMessage(msg.sender, pkG2));
        if (!BN254.verifyWithG1Key(h, proof, pkG1, pkG2)) revert InvalidProofOfPossession();

        uint96 stake = SafeCast.toUint96(msg.value);
        uint96 weight = _weight(stake);
        uint16 index = current.size;
        admitted[msg.sender] = false;
        keyUsed[keyHash] = true;
        verifiers[msg.sender] = Verifier(stake, 0, index, Status.Active);
        _keysG2[msg.sender] = pkG2;
        bytes memory table = CommitteeTable.append(CodeStore.read(current.table), pkG1, msg.sender, weight);
        uint64 epochId = _startEpoch(table, index + 1, current.totalWeight + weight);
        emit VerifierRegistered(msg.sender, epochId, index, stake, weight, keyHash);
    }

    /// @inheritdoc IVerifierCommittee
    function requestExit() external {
        Verifier storage v = verifiers[msg.sender];
        if (v.status != Status.Active) revert VerifierNotActive(msg.sender);
        Epoch storage current = _epochs[_epochs.length - 1];
        bytes memory table = CodeStore.read(current.table);
        // The last member moves into the leaver's seat: one copy, one index update.
        address moved = CommitteeTable.remove(table, v.index);
        if (moved != address(0)) verifiers[moved].index = v.index;
        uint16 last = current.size - 1;
        uint64 withdrawableAt = uint64(block.timestamp) + exitDelay;
        v.status = Status.Exiting;
        v.withdrawableAt = withdrawableAt;
        v.index = 0;
        uint64 epochId = _startEpoch(table, last, current.totalWeight - _weight(v.stake));
        emit ExitRequested(msg.sender, epochId, withdrawableAt);
    }

    /// @inheritdoc IVerifierCommittee
    function withdraw() external nonReentrant {
        Verifier memory v = verifiers[msg.sender];
        if (v.status != Status.Exiting) revert VerifierNotExiting(msg.sender);
        if (block.timestamp < v.withdrawableAt) revert ExitDelayNotOver(v.withdrawableAt);
        delete verifiers[msg.sender];
        emit StakeWithdrawn(msg.sender, v.stake);
        payable(msg.sender).sendValue(v.stake);
    }

    // ---- attestation --------------------------------------------------------------------------------------

    /// @inheritdoc IRoundAttestor
    /// @dev Fix the epoch whose committee attests the market's current result for a round: the epoch current now,
    /// unless it was pinned before. Idempotent, so a market can call it from its own finalization.
    function pinSnapshot(address market, uint256 projectId, uint16 round) external returns (uint64 epoch) {
        bytes32 digest = _marketDigest(market, projectId, round);
        bytes32 key = roundKey(market, projectId, round, digest);
        RoundRecord memory record = _rounds[key];
        if (!record.pinned) {
            record = _pin(market, projectId, round, digest);
            _rounds[key] = record;
        }
        return record.epoch;
    }

    /// @inheritdoc IVerifierCommittee
    function attest(
        address market,
        uint256 projectId,
        uint16 round,
        bytes32 digest,
        uint256 signerBitmap,
        BN254.G2Point calldata apkG2,
        BN254.G1Point calldata signature
    ) external {
        (bytes32 key, RoundRecord memory record) = _openForAttestation(market, projectId, round, digest);
        (uint256 signedWeight, uint256 totalWeight) =
            _checkQuorumSignature(record.epoch, digest, signerBitmap, apkG2, signature);
        record.attested = true;
        // The bitmap names at most MAX_COMMITTEE_SIZE (128) members: it fits the record's slot.
        record.signers = uint128(signerBitmap);
        _rounds[key] = record;
        emit RoundAttested(market, projectId, round, digest, record.epoch, signerBitmap, signedWeight, totalWeight);
    }

    /// @inheritdoc IRoundAttestor
    /// @dev The calling market (MARKET_ROLE) overturned the result it stores for the round: every member of the
    /// snapshot who signed it, still seated or still waiting out its exit delay, loses its whole stake (burned) and
    /// its seat, and the committee starts a new epoch without them. Once per round result; a result nobody
    /// attested slashes nobody.
    function slashAttesters(uint256 projectId, uint16 round)
        external
        nonReentrant
        onlyRole(MARKET_ROLE)
        returns (uint256 burned)
    {
        address market = msg.sender;
        bytes32 digest = IRoundResultSource(market).roundResultDigest(projectId, round);
        bytes32 key = roundKey(market, projectId, round, digest);
        RoundRecord memory record = _rounds[key];
        if (!record.attested || record.slashed) return 0;
        _rounds[key].slashed = true;
        burned = _slashSigners(record, Overturned(market, projectId, round));
        emit AttestersSlashed(market, projectId, round, digest, burned);
        if (burned != 0) BURN_ADDRESS.sendValue(burned);
    }

    // ---- views --------------------------------------------------------------------------------------------

    /// @inheritdoc IRoundAttestor
    /// @dev True when the result the market stores now for the round has been attested by a quorum. A market that
    /// replaces a round's result (after a challenge) needs a new attestation for the new digest.
    function isAttested(address market, uint256 projectId, uint16 round) external view returns (bool) {
        if (market.code.length == 0) return false;
        bytes32 digest = IRoundResultSource(market).roundResultDigest(projectId, round);
        return digest != bytes32(0) && _rounds[roundKey(market, projectId, round, digest)].attested;
    }

    /// @inheritdoc IVerifierCommittee
    function roundKey(address market, uint256 projectId, uint16 round, bytes32 digest) public pure returns (bytes32) {
        return keccak256(abi.encode(market, projectId, round, digest));
    }

    /// @inheritdoc IVerifierCommittee
    function roundRecord(address market, uint256 projectId, uint16 round, bytes32 digest)
        external
        view
        returns (RoundRecord memory)
    {
        return _rounds[roundKey(market, projectId, round, digest)];
    }

    /// @inheritdoc IVerifierCommittee
    function currentEpoch() external view returns (uint64) {
        return uint64(_epochs.length - 1);
    }

    /// @inheritdoc IVerifierCommittee
    function epochInfo(uint64 epoch) external view returns (Epoch memory) {
        if (epoch >= _epochs.length) revert UnknownEpoch(epoch);
        return _epochs[epoch];
    }

    /// @inheritdoc IVerifierCommittee
    function committee(uint64 epoch)
        external
        view
        returns (address[] memory members, uint96[] memory weights, BN254.G1Point[] memory keysG1)
    {
        if (epoch >= _epochs.length) revert UnknownEpoch(epoch);
        Epoch storage e = _epochs[epoch];
        bytes memory table = CodeStore.read(e.table);
        members = new address[](e.size);
        weights = new uint96[](e.size);
        keysG1 = new BN254.G1Point[](e.size);
        for (uint256 i; i < e.size; ++i) {
            (keysG1[i], members[i], weights[i]) = CommitteeTable.member(table, i);
        }
    }

    /// @inheritdoc IVerifierCommittee
    function publicKeyG2(address verifier) external view returns (BN254.G2Point memory) {
        return _keysG2[verifier];
    }

    /// @inheritdoc IVerifierCommittee
    function possessionMessage(address owner, BN254.G2Point calldata pkG2) public view returns (bytes memory) {
        return abi.encode(pkG2.xIm, pkG2.xRe, pkG2.yIm, pkG2.yRe, owner, block.chainid, address(this));
    }

    /// @inheritdoc IVerifierCommittee
    function messagePoint(bytes32 digest) external view returns (BN254.G1Point memory) {
        return BN254.hashToG1(ATTEST_TAG, abi.encodePacked(digest));
    }

    // ---- internals ----------------------------------------------------------------------------------------

    function _marketDigest(address market, uint256 projectId, uint16 round) private view returns (bytes32 digest) {
        if (market.code.length == 0) revert MarketNotContract(market);
        digest = IRoundResultSource(market).roundResultDigest(projectId, round);
        if (digest == bytes32(0)) revert MarketRoundNotFinalized(market, projectId, round);
    }

    /// @dev The round's record, pinned now if it was not, after checking the digest, replay and the window.
    function _openForAttestation(address market, uint256 projectId, uint16 round, bytes32 digest)
        private
        returns (bytes32 key, RoundRecord memory record)
    {
        bytes32 stored = _marketDigest(market, projectId, round);
        if (stored != digest) revert DigestMismatch(stored, digest);
        key = roundKey(market, projectId, round, digest);
        record = _rounds[key];
        if (record.attested) revert AlreadyAttested(market, projectId, round, digest);
        if (!record.pinned) {
            record = _pin(market, projectId, round, digest);
        } else if (block.timestamp > record.pinnedAt + attestWindow) {
            revert AttestationWindowClosed(record.pinnedAt + attestWindow);
        }
    }

    /// @dev Reverts unless the bitmap's signers hold a quorum of the epoch's stake and signed `digest`.
    function _checkQuorumSignature(
        uint64 epoch,
        bytes32 digest,
        uint256 signerBitmap,
        BN254.G2Point calldata apkG2,
        BN254.G1Point calldata signature
    ) private view returns (uint256 signedWeight, uint256 totalWeight) {
        Epoch storage snapshot = _epochs[epoch];
        BN254.G1Point memory apkG1;
        (apkG1, signedWeight) = _aggregateSigners(snapshot, signerBitmap);
        totalWeight = snapshot.totalWeight;
        if (signedWeight * QUORUM_DENOMINATOR < totalWeight * QUORUM_NUMERATOR) {
            revert QuorumNotReached(signedWeight, totalWeight);
        }
        if (BN254.isInfinity(apkG2)) revert InvalidPublicKey();
        BN254.G1Point memory h = BN254.hashToG1(ATTEST_TAG, abi.encodePacked(digest));
        if (!BN254.verifyWithG1Key(h, signature, apkG1, apkG2)) revert InvalidAggregateSignature();
    }

    function _pin(address market, uint256 projectId, uint16 round, bytes32 digest)
        private
        returns (RoundRecord memory record)
    {
        record = RoundRecord(uint48(_epochs.length - 1), uint48(block.timestamp), true, false, false, 0);
        emit SnapshotPinned(market, projectId, round, digest, record.epoch);
    }

    /// @dev The signers' key sum and stake from the epoch's blob (one EXTCODECOPY, at most size/2 ecAdds).
    function _aggregateSigners(Epoch storage snapshot, uint256 bitmap)
        private
        view
        returns (BN254.G1Point memory apk, uint256 signedWeight)
    {
        if (bitmap == 0) revert NoSigners();
        uint256 size = snapshot.size;
        if (bitmap >> size != 0) revert UnknownSigner(bitmap, size);
        return CommitteeTable.aggregate(CodeStore.read(snapshot.table), bitmap, snapshot.totalWeight);
    }

    /// @dev The round whose result was overturned (what a VerifierSlashed event names).
    struct Overturned {
        address market;
        uint256 projectId;
        uint16 round;
    }

    /// @dev Slashes every signer of `record` and seats the current committee without the slashed members.
    function _slashSigners(RoundRecord memory record, Overturned memory what) private returns (uint256 burned) {
        Epoch storage current = _epochs[_epochs.length - 1];
        Seats memory seats = Seats(CodeStore.read(current.table), current.size, current.totalWeight);
        bytes memory snapshot = CodeStore.read(_epochs[record.epoch].table);
        uint256 signers = record.signers;
        for (uint256 i; signers != 0; ++i) {
            bool signed = signers & 1 == 1;
            signers >>= 1;
            if (signed) burned += _slash(seats, snapshot, i, what);
        }
        if (seats.size != current.size) _startEpoch(seats.table, uint16(seats.size), seats.totalWeight);
    }

    /// @dev The current committee while slashing edits it: its table, size and total weight.
    struct Seats {
        bytes table;
        uint256 size;
        uint256 totalWeight;
    }

    /// @dev Slash member `index` of the snapshot `snapshot`: its whole stake (returned, to be burned) and, if it is
    /// still seated, its seat in `seats` (the last member moves into it, as on an exit). A member that withdrew
    /// (impossible within a project's challenge window) or was slashed already gives nothing.
    function _slash(Seats memory seats, bytes memory snapshot, uint256 index, Overturned memory what)
        private
        returns (uint96 stake)
    {
        (, address member,) = CommitteeTable.member(snapshot, index);
        Verifier storage v = verifiers[member];
        if (v.status == Status.Active) {
            address moved = CommitteeTable.remove(seats.table, v.index);
            if (moved != address(0)) verifiers[moved].index = v.index;
            seats.size -= 1;
            seats.totalWeight -= _weight(v.stake);
        } else if (v.status != Status.Exiting) {
            return 0;
        }
        stake = v.stake;
        emit VerifierSlashed(member, stake, what.market, what.projectId, what.round);
        v.stake = 0;
        v.index = 0;
        v.status = Status.Slashed;
    }

    /// @dev A member's say in a quorum: its stake, capped.
    function _weight(uint96 stake) private view returns (uint96) {
        return stake < maxWeight ? stake : maxWeight;
    }

    function _startEpoch(bytes memory table, uint16 size, uint256 totalWeight) private returns (uint64 epochId) {
        address store = size == 0 ? address(0) : CodeStore.write(table);
        epochId = uint64(_epochs.length);
        _epochs.push(Epoch(store, size, uint64(block.timestamp), totalWeight));
        emit EpochStarted(epochId, store, size, totalWeight);
    }
}
