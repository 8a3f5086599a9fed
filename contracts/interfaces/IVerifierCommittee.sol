// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {BN254} from "../lib/BN254.sol";
import {IRoundAttestor} from "./IRoundAttestor.sol";

/// @title IVerifierCommittee: types, events, errors and functions of the verifier committee
/// @notice The implementation is {VerifierCommittee}: admitted, staked verifiers who recompute training rounds and
/// attest their result digests with one aggregated BLS signature on BN254, and lose their stake when a challenge
/// overturns a result they attested.
interface IVerifierCommittee is IRoundAttestor {
    /// @notice A verifier's lifecycle: `Active` members sit in the current epoch; `Exiting` ones wait out the
    /// exit delay before `withdraw`; `Slashed` ones attested a result a challenge overturned and lost their stake.
    enum Status {
        None,
        Active,
        Exiting,
        Slashed
    }

    /// @notice One verifier, in one packed slot; `index` is its position in the current epoch's table while
    /// Active. `stake` is what it locked (and what a slash burns); its weight in a quorum is the stake capped at
    /// `maxWeight`.
    struct Verifier {
        uint96 stake;
        uint64 withdrawableAt;
        uint16 index;
        Status status;
    }

    /// @notice The committee between two membership changes; `table` is a CodeStore blob in CommitteeTable
    /// layout (members' G1 keys, addresses and weights); `totalWeight` is the sum of the weights.
    struct Epoch {
        address table;
        uint16 size;
        uint64 startedAt;
        uint256 totalWeight;
    }

    /// @notice A round result's snapshot, whether it has been attested and by whom (bit i: member i of the
    /// snapshot), and whether its attesters were slashed; one slot.
    struct RoundRecord {
        uint48 epoch;
        uint48 pinnedAt;
        bool pinned;
        bool attested;
        bool slashed;
        uint128 signers;
    }

    /// @notice An account was admitted: it may `register` once.
    /// @param verifier The account.
    /// @param by The admitting account (ADMISSION_ROLE).
    event VerifierAdmitted(address indexed verifier, address indexed by);
    /// @notice An admission not yet used was withdrawn.
    /// @param verifier The account.
    /// @param by The account that withdrew it (ADMISSION_ROLE).
    event AdmissionRevoked(address indexed verifier, address indexed by);
    /// @notice A verifier joined the committee.
    /// @param verifier The verifier.
    /// @param epoch The epoch its joining started.
    /// @param index Its position in that epoch's table (its bit in signer bitmaps).
    /// @param stake Its stake, in wei.
    /// @param weight Its weight in a quorum (the stake capped at `maxWeight`).
    /// @param keyHash keccak256 of its G1 key.
    event VerifierRegistered(
        address indexed verifier, uint64 indexed epoch, uint16 index, uint96 stake, uint96 weight, bytes32 keyHash
    );
    /// @notice A verifier left the committee; its stake can be withdrawn at `withdrawableAt`.
    /// @param verifier The verifier.
    /// @param epoch The epoch its leaving started.
    /// @param withdrawableAt When `withdraw` opens for it.
    event ExitRequested(address indexed verifier, uint64 indexed epoch, uint64 withdrawableAt);
    /// @notice A former verifier took its stake back.
    /// @param verifier The verifier.
    /// @param amount The wei sent.
    event StakeWithdrawn(address indexed verifier, uint96 amount);
    /// @notice A new committee epoch began (after a member joined or left).
    /// @param epoch The new epoch's id.
    /// @param table The CodeStore blob holding its members (zero for the empty committee).
    /// @param size Its number of members.
    /// @param totalWeight Their total weight.
    event EpochStarted(uint64 indexed epoch, address table, uint16 size, uint256 totalWeight);
    /// @notice The epoch that may attest a round result was fixed.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest the snapshot is for.
    /// @param epoch The epoch pinned.
    event SnapshotPinned(
        address indexed market, uint256 indexed projectId, uint16 indexed round, bytes32 digest, uint64 epoch
    );
    /// @notice A quorum attested a round result.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest attested.
    /// @param epoch The snapshot epoch whose members signed.
    /// @param signerBitmap Bit i set when member i signed.
    /// @param signedWeight The signers' weight.
    /// @param totalWeight The snapshot's total weight.
    event RoundAttested(
        address indexed market,
        uint256 indexed projectId,
        uint16 indexed round,
        bytes32 digest,
        uint64 epoch,
        uint256 signerBitmap,
        uint256 signedWeight,
        uint256 totalWeight
    );
    /// @notice A member lost its stake for attesting a result a challenge overturned.
    /// @param verifier The member.
    /// @param amount The wei burned.
    /// @param market The market whose round was overturned.
    /// @param projectId The project.
    /// @param round The round.
    event VerifierSlashed(
        address indexed verifier, uint96 amount, address indexed market, uint256 indexed projectId, uint16 round
    );
    /// @notice Every attester of an overturned round result was slashed.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The overturned result's digest.
    /// @param burned The wei burned in all.
    event AttestersSlashed(
        address indexed market, uint256 indexed projectId, uint16 indexed round, bytes32 digest, uint256 burned
    );

    /// @notice A non-zero admin, a positive `minStake`, `maxWeight` at least `minStake` and `exitDelay` at least
    /// 2 seconds (the attestation window is half of it).
    error InvalidConfig();
    /// @notice The account has no admission (`admit` it first).
    /// @param verifier The account.
    error NotAdmitted(address verifier);
    /// @notice The stake sent is below `minStake`.
    /// @param sent The wei sent.
    /// @param minimum The minimum stake.
    error VerifierStakeTooLow(uint256 sent, uint256 minimum);
    /// @notice The caller already has a record (active or exiting).
    /// @param verifier The caller.
    error VerifierAlreadyRegistered(address verifier);
    /// @notice The committee has MAX_COMMITTEE_SIZE members.
    /// @param size Its size.
    error CommitteeFull(uint256 size);
    /// @notice A public key is the point at infinity.
    error InvalidPublicKey();
    /// @notice This G1 key was registered before.
    /// @param keyHash keccak256 of the key.
    error KeyAlreadyRegistered(bytes32 keyHash);
    /// @notice The proof of possession does not verify for these keys, this caller, chain and committee.
    error InvalidProofOfPossession();
    /// @notice The caller is not an active member.
    /// @param verifier The caller.
    error VerifierNotActive(address verifier);
    /// @notice The caller has not requested an exit.
    /// @param verifier The caller.
    error VerifierNotExiting(address verifier);
    /// @notice The exit delay has not passed.
    /// @param withdrawableAt When `withdraw` opens.
    error ExitDelayNotOver(uint64 withdrawableAt);
    /// @notice `market` has no code.
    /// @param market The address given.
    error MarketNotContract(address market);
    /// @notice The market has no result for this round yet.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    error MarketRoundNotFinalized(address market, uint256 projectId, uint16 round);
    /// @notice The digest given is not the one the market stores for the round.
    /// @param expected The market's digest.
    /// @param given The digest given.
    error DigestMismatch(bytes32 expected, bytes32 given);
    /// @notice This round result has been attested already.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest.
    error AlreadyAttested(address market, uint256 projectId, uint16 round, bytes32 digest);
    /// @notice The snapshot's attestation window has closed.
    /// @param closedAt When it closed.
    error AttestationWindowClosed(uint64 closedAt);
    /// @notice The signer bitmap is empty.
    error NoSigners();
    /// @notice The bitmap names a member index the snapshot's committee does not have.
    /// @param signerBitmap The bitmap given.
    /// @param committeeSize The snapshot's size.
    error UnknownSigner(uint256 signerBitmap, uint256 committeeSize);
    /// @notice The signers hold less than the quorum of the snapshot's weight.
    /// @param signedWeight The signers' weight.
    /// @param totalWeight The snapshot's total weight.
    error QuorumNotReached(uint256 signedWeight, uint256 totalWeight);
    /// @notice The aggregated signature does not verify against the signers' keys and the digest.
    error InvalidAggregateSignature();
    /// @notice No such epoch.
    /// @param epoch The epoch asked for.
    error UnknownEpoch(uint64 epoch);

    /// @notice Admit `verifier`: it may register once (ADMISSION_ROLE only).
    /// @param verifier The account.
    function admit(address verifier) external;

    /// @notice Withdraw an admission `verifier` has not used (ADMISSION_ROLE only).
    /// @param verifier The account.
    function revokeAdmission(address verifier) external;

    /// @notice Join the committee (admitted accounts only) with msg.value as stake, a BLS key in G2 and its G1 twin, and a proof of
    /// possession: a signature under DST_POP of `possessionMessage(msg.sender, pkG2)`.
    /// @param pkG1 The key in G1.
    /// @param pkG2 The same key in G2.
    /// @param proof The proof of possession.
    function register(BN254.G1Point calldata pkG1, BN254.G2Point calldata pkG2, BN254.G1Point calldata proof)
        external
        payable;

    /// @notice Leave the committee now; the stake can be withdrawn `exitDelay` seconds later.
    function requestExit() external;

    /// @notice Take the stake back after the exit delay (pull payment).
    function withdraw() external;

    /// @notice Record that signers holding a quorum of the snapshot's weight signed `digest`, the result the
    /// market stores for (`projectId`, `round`). Anyone may submit.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest signed.
    /// @param signerBitmap Bit i set when member i of the snapshot epoch signed.
    /// @param apkG2 The sum of the signers' G2 keys (checked against their G1 keys in the same pairing).
    /// @param signature The sum of the signers' G1 signatures over `digest` under DST_ATTEST.
    function attest(
        address market,
        uint256 projectId,
        uint16 round,
        bytes32 digest,
        uint256 signerBitmap,
        BN254.G2Point calldata apkG2,
        BN254.G1Point calldata signature
    ) external;

    /// @notice The key under which a round result's snapshot and attestation are recorded.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest.
    /// @return key keccak256(abi.encode(market, projectId, round, digest)).
    function roundKey(address market, uint256 projectId, uint16 round, bytes32 digest)
        external
        pure
        returns (bytes32 key);

    /// @notice The snapshot and attestation state of one round result.
    /// @param market The market.
    /// @param projectId The project.
    /// @param round The round.
    /// @param digest The result digest.
    /// @return record Its record.
    function roundRecord(address market, uint256 projectId, uint16 round, bytes32 digest)
        external
        view
        returns (RoundRecord memory record);

    /// @notice The id of the current epoch (0: the empty committee at deployment).
    /// @return epoch The id.
    function currentEpoch() external view returns (uint64 epoch);

    /// @notice One epoch's committee summary.
    /// @param epoch The epoch.
    /// @return summary Its record.
    function epochInfo(uint64 epoch) external view returns (Epoch memory summary);

    /// @notice One epoch's members in bitmap order, with their weights and G1 keys.
    /// @param epoch The epoch.
    /// @return members Their addresses.
    /// @return weights Their weights.
    /// @return keysG1 Their G1 keys.
    function committee(uint64 epoch)
        external
        view
        returns (address[] memory members, uint96[] memory weights, BN254.G1Point[] memory keysG1);

    /// @notice A verifier's G2 public key (all zeros if it never registered).
    /// @param verifier The verifier.
    /// @return key Its key.
    function publicKeyG2(address verifier) external view returns (BN254.G2Point memory key);

    /// @notice The bytes a proof of possession signs: abi.encode(pkG2, owner, chainid, this committee).
    /// @param owner The verifier.
    /// @param pkG2 Its G2 key.
    /// @return message The bytes.
    function possessionMessage(address owner, BN254.G2Point calldata pkG2)
        external
        view
        returns (bytes memory message);

    /// @notice The G1 point attestations of `digest` sign (hash-to-G1 under DST_ATTEST).
    /// @param digest The result digest.
    /// @return point The message point.
    function messagePoint(bytes32 digest) external view returns (BN254.G1Point memory point);
}
