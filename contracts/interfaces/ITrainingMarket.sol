// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundResultSource} from "./IRoundResultSource.sol";

/// @title ITrainingMarket: types, events, errors and functions of the proof-of-contribution training marketplace
/// @notice The implementation is {TrainingMarket}; this file is the surface that off-chain code (the aggregator,
/// the round runner, the CLI) decodes. Amounts are wei in uint96, times are unix seconds, durations are seconds
/// in uint32, counters are uint16. Rounds are numbered 0..rounds-1 and project ids start at 1.
/// @dev A round is sealed: while it is open for commits, trainers commit to their updates
/// (`commitUpdate`: keccak256(abi.encode(chainid, market, projectId, round, trainer, updateSha256, salt))), so
/// nothing that identifies an update is public; once commits close, trainers reveal (`revealUpdate`) and the
/// round's validation shard is revealed (`revealValidation`, checked against the root committed at creation);
/// the aggregator then finalizes the round on the revealed updates and that shard.
interface ITrainingMarket is IRoundResultSource {
    /// @notice Lifecycle of a project. `Completed`: the last round was finalized. `Cancelled`: by the liveness
    /// rule, either because the aggregator missed a deadline or because a challenge was upheld.
    enum Status {
        None,
        Active,
        Completed,
        Cancelled
    }

    /// @notice State of the (at most one) challenge against a finalized round. `Lapsed`: the arbiter did not rule
    /// within ARBITRATION_PERIOD; the round stands and the challenger forfeits LAPSE_BURN_BPS of the bond.
    enum ChallengeState {
        None,
        Open,
        Rejected,
        Upheld,
        Lapsed
    }

    /// @notice The parameters `createProject` (or the constructor) may refuse, as InvalidParameter names them.
    enum Parameter {
        ValidationRoot,
        Rounds,
        RoundDuration,
        RevealWindow,
        AggregationWindow,
        MinStake,
        MaxTrainers,
        Aggregator,
        Arbiter,
        ChallengeWindow,
        ChallengeBond,
        SlashBps,
        Committee
    }

    /// @notice Why a project was cancelled.
    enum CancelReason {
        AggregatorMissedDeadline,
        ChallengeUpheld
    }

    /// @notice Everything `createProject` records; msg.value is the reward pool.
    /// @dev configCid/configSha256 name the project manifest (model, aggregation rule and parameters) so that
    /// anyone can recompute a round. `validationRoot` is the Merkle root (OpenZeppelin MerkleProof, sorted pairs)
    /// over leaves keccak256(bytes.concat(keccak256(abi.encode(uint16 round, bytes32 shardSha256)))), one
    /// validation shard per round, revealed when that round's commits close. Each round has a commit window of
    /// `roundDuration`, then a reveal window of `revealWindow`, then `aggregationWindow` for the aggregator.
    /// challengeWindow == 0 disables challenges (then arbiter and challengeBond may be zero); slashAfterFlags == 0
    /// disables slashing.
    struct ProjectParams {
        string initialModelCid;
        bytes32 initialModelSha256;
        string configCid;
        bytes32 configSha256;
        bytes32 validationRoot;
        uint16 rounds;
        uint32 roundDuration;
        uint32 revealWindow;
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
    /// @dev `trainers` is exactly the round's revealers, sorted by ascending address (this is how the contract
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

    /// @notice A project as stored (returned by `getProject`). Fields are grouped by storage slot: the first
    /// slot is the open round's schedule and tally, the one slot every commit and reveal reads and writes.
    /// @dev `currentRound` is the open round (== rounds once the last round is finalized); `roundCommits` and
    /// `roundReveals` count its commitments and reveals, `roundRevealedStake` the revealers' stakes.
    /// `allocatedPool` is the pool of the finalized rounds that still stand, `ownerRefund` the part of it nobody
    /// earned (rounding dust, rounds where every score was 0), `escrow` the wei this project holds right now (pool
    /// + stakes + bonds - payouts - burns). `workWeight` is the sum, over finalized rounds, of the stake of every
    /// unflagged revealer: with the open round's `roundRevealedStake` it is what the liveness split divides by.
    struct Project {
        uint40 roundOpenedAt;
        uint32 roundDuration;
        uint32 revealWindow;
        uint16 currentRound;
        Status status;
        uint16 roundCommits;
        uint16 roundReveals;
        uint96 roundRevealedStake;
        address owner;
        uint96 pool;
        address aggregator;
        uint96 minStake;
        address arbiter;
        uint32 aggregationWindow;
        uint32 challengeWindow;
        uint16 rounds;
        bool ownerClaimed;
        uint16 maxTrainers;
        uint16 trainerCount;
        uint16 slashAfterFlags;
        uint16 slashBps;
        uint16 openChallenges;
        uint64 lastFinalizedAt;
        uint96 challengeBond;
        uint96 escrow;
        uint96 allocatedPool;
        uint96 ownerRefund;
        uint128 workWeight;
        bytes32 initialModelSha256;
        bytes32 configSha256;
        bytes32 validationRoot;
        string initialModelCid;
        string configCid;
    }

    /// @notice A round as stored (returned by `getRound`; an unfinalized round reads as zeros except `openedAt`
    /// for the open round and `validationSha256` once its shard is revealed).
    /// @dev `flaggedStake` is the stake of the round's flagged trainers (given back to `workWeight` if an upheld
    /// challenge reverses the round).
    struct Round {
        uint64 openedAt;
        uint64 finalizedAt;
        uint96 allocated;
        uint16 submitters;
        uint16 flaggedCount;
        address challenger;
        uint64 challengedAt;
        ChallengeState challenge;
        uint96 flaggedStake;
        bytes32 resultDigest;
        bytes32 modelSha256;
        bytes32 reportSha256;
        bytes32 validationSha256;
        string modelCid;
        string reportCid;
    }

    /// @notice A trainer's standing in one project. `reward` is the sum of its shares of finalized rounds
    /// (reversed rounds are subtracted at claim time); `submissions` counts the finalized rounds it revealed an
    /// update to, `flags` those in which it was flagged.
    struct Trainer {
        uint96 stake;
        uint96 reward;
        uint16 submissions;
        uint16 flags;
        bool registered;
        bool claimed;
    }

    /// @notice One trainer's entry in one round (returned by `getSubmission`): its commitment until it reveals,
    /// then `revealed`, and once the round is finalized whether it was flagged and the wei credited for it.
    struct Submission {
        bytes32 commitment;
        bool revealed;
        bool flagged;
        uint96 share;
    }

    /// @notice A project was created and its pool escrowed.
    /// @param projectId The new project's id.
    /// @param owner Who created it (and receives the refund of unearned pool).
    /// @param aggregator Who posts round results.
    /// @param arbiter Who rules on challenges (zero when challenges are disabled).
    /// @param pool The reward pool escrowed, in wei.
    /// @param rounds The number of rounds.
    /// @param initialModelCid CID of the model round 0 trains from.
    /// @param initialModelSha256 sha256 of that model's bytes.
    /// @param configCid CID of the project manifest.
    /// @param configSha256 sha256 of the manifest's bytes.
    /// @param validationRoot Merkle root of the per-round validation shards' sha256s.
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
        bytes32 configSha256,
        bytes32 validationRoot
    );
    /// @notice A round opened for commitments.
    /// @param projectId The project.
    /// @param round The round now open.
    /// @param openedAt When its commit window started (unix seconds).
    event RoundOpened(uint256 indexed projectId, uint16 indexed round, uint64 openedAt);
    /// @notice A trainer joined a project.
    /// @param projectId The project.
    /// @param trainer The trainer.
    /// @param stake The stake it escrowed, in wei.
    event TrainerRegistered(uint256 indexed projectId, address indexed trainer, uint96 stake);
    /// @notice A trainer committed to its update for the open round (nothing identifies the update yet).
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer (the signer of a relayed commitment, never the relayer).
    /// @param commitment keccak256(abi.encode(chainid, market, projectId, round, trainer, updateSha256, salt)).
    event UpdateCommitted(
        uint256 indexed projectId, uint16 indexed round, address indexed trainer, bytes32 commitment
    );
    /// @notice A trainer revealed the update it committed to: the round runner reads a round's updates from these.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    /// @param cid CID of the update's bytes.
    /// @param sha256 sha256 of those bytes (the one the commitment binds).
    event UpdateRevealed(
        uint256 indexed projectId, uint16 indexed round, address indexed trainer, string cid, bytes32 sha256
    );
    /// @notice A round's validation shard was revealed (checked against the project's validation root).
    /// @param projectId The project.
    /// @param round The round it scores.
    /// @param cid CID of the shard's bytes.
    /// @param sha256 sha256 of those bytes.
    event ValidationRevealed(uint256 indexed projectId, uint16 indexed round, string cid, bytes32 sha256);
    /// @notice The aggregator posted a round's result.
    /// @param projectId The project.
    /// @param round The round finalized.
    /// @param resultDigest What the verifier committee signs (see `resultDigestOf`).
    /// @param modelCid CID of the new global model.
    /// @param modelSha256 sha256 of its bytes.
    /// @param reportCid CID of the round report.
    /// @param reportSha256 sha256 of its bytes.
    /// @param allocated Wei credited to trainers.
    /// @param dust The round's pool minus `allocated`, credited to the owner's refund.
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
    /// @notice The inputs of a round's allocation, so that indexers need not decode calldata.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainers The round's revealers, ascending.
    /// @param scores Their fixed-point scores (1e18 = 1.0), in the same order.
    /// @param flagged The flagged revealers, ascending.
    event RoundScored(
        uint256 indexed projectId, uint16 indexed round, address[] trainers, uint64[] scores, address[] flagged
    );
    /// @notice The last round was finalized.
    /// @param projectId The project.
    event ProjectCompleted(uint256 indexed projectId);
    /// @notice The project ended by the liveness rule.
    /// @param projectId The project.
    /// @param by Who cancelled it (anyone past the deadline, or the arbiter upholding a challenge).
    /// @param reason Why.
    /// @param openRound The round that was open when it ended.
    event ProjectCancelled(uint256 indexed projectId, address indexed by, CancelReason reason, uint16 openRound);
    /// @notice A finalized round was disputed.
    /// @param projectId The project.
    /// @param round The round disputed.
    /// @param challenger Who posted the bond.
    /// @param bond The bond, in wei.
    event ChallengeOpened(uint256 indexed projectId, uint16 indexed round, address indexed challenger, uint96 bond);
    /// @notice The arbiter ruled on a challenge.
    /// @param projectId The project.
    /// @param round The round disputed.
    /// @param upheld True when the round's result was overturned.
    event ChallengeResolved(uint256 indexed projectId, uint16 indexed round, bool upheld);
    /// @notice A challenge lapsed: the arbiter did not rule within ARBITRATION_PERIOD.
    /// @param projectId The project.
    /// @param round The round disputed.
    /// @param burned The part of the bond the challenger forfeited (the rest is owed back).
    event ChallengeLapsed(uint256 indexed projectId, uint16 indexed round, uint96 burned);
    /// @notice An upheld challenge reversed a round's allocation.
    /// @param projectId The project.
    /// @param round The round reversed.
    /// @param allocated What the round had credited to trainers, now taken back.
    event RoundReversed(uint256 indexed projectId, uint16 indexed round, uint96 allocated);
    /// @notice Wei left the escrow for BURN_ADDRESS (a slash or a forfeited bond).
    /// @param projectId The project.
    /// @param from Whose stake or bond was burned.
    /// @param amount The wei burned.
    event Burned(uint256 indexed projectId, address indexed from, uint256 amount);
    /// @notice An account pulled what the project owed it.
    /// @param projectId The project.
    /// @param account Who claimed.
    /// @param amount The wei sent.
    /// @param slashed The part of its stake burned instead.
    event Claimed(uint256 indexed projectId, address indexed account, uint256 amount, uint256 slashed);
    /// @notice The committee's `pinSnapshot` failed at finalization; the round was finalized anyway and the
    /// committee pins its snapshot at the first attestation instead.
    /// @param projectId The project.
    /// @param round The round finalized.
    event CommitteePinFailed(uint256 indexed projectId, uint16 indexed round);
    /// @notice The committee's `slashAttesters` failed when a challenge was upheld; the ruling stands.
    /// @param projectId The project.
    /// @param round The round overturned.
    event CommitteeSlashFailed(uint256 indexed projectId, uint16 indexed round);

    /// @notice No project has this id.
    /// @param projectId The id asked for.
    error UnknownProject(uint256 projectId);
    /// @notice The project is not active (completed or cancelled).
    /// @param projectId The project.
    /// @param status Its status.
    error ProjectNotActive(uint256 projectId, Status status);
    /// @notice A creation or construction parameter is out of range.
    /// @param name The parameter (an enum rather than a string: it keeps the deployed code small).
    error InvalidParameter(Parameter name);
    /// @notice `createProject` was sent no pool.
    error EmptyPool();
    /// @notice An amount does not fit the project's uint96 accounting.
    /// @param amount The amount, in wei.
    error AmountTooLarge(uint256 amount);
    /// @notice A content reference with an empty or overlong CID, or a zero digest.
    /// @param cid The CID given.
    /// @param sha256Digest The digest given.
    error InvalidContentReference(string cid, bytes32 sha256Digest);
    /// @notice The last round's commit window has closed: nobody can join any more.
    /// @param projectId The project.
    error RegistrationClosed(uint256 projectId);
    /// @notice The stake sent is below the project's minimum.
    /// @param projectId The project.
    /// @param stake The stake sent, in wei.
    /// @param minStake The minimum, in wei.
    error StakeTooLow(uint256 projectId, uint256 stake, uint256 minStake);
    /// @notice Every trainer seat is taken.
    /// @param projectId The project.
    /// @param maxTrainers The number of seats.
    error ProjectFull(uint256 projectId, uint16 maxTrainers);
    /// @notice The trainer is registered already.
    /// @param projectId The project.
    /// @param trainer The trainer.
    error AlreadyRegistered(uint256 projectId, address trainer);
    /// @notice The account judges or aggregates this project, or owns it and would judge or aggregate it.
    /// @param projectId The project.
    /// @param account The account.
    error ConflictOfInterest(uint256 projectId, address account);
    /// @notice The trainer is not registered in the project.
    /// @param projectId The project.
    /// @param trainer The trainer.
    error NotRegistered(uint256 projectId, address trainer);
    /// @notice The round named is not the open round.
    /// @param projectId The project.
    /// @param round The round named.
    /// @param openRound The open round.
    error WrongRound(uint256 projectId, uint16 round, uint16 openRound);
    /// @notice The open round's commit window has closed.
    /// @param projectId The project.
    /// @param round The round.
    /// @param closedAt When the window closed (unix seconds).
    error CommitWindowClosed(uint256 projectId, uint16 round, uint64 closedAt);
    /// @notice A zero commitment, or one below SEALED_FLOOR (which no honest keccak256 output is).
    /// @param commitment The commitment given.
    error InvalidCommitment(bytes32 commitment);
    /// @notice The trainer committed to this round already.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    error AlreadyCommitted(uint256 projectId, uint16 round, address trainer);
    /// @notice Reveals are accepted only after the commit window and until the reveal window ends.
    /// @param projectId The project.
    /// @param round The round.
    /// @param opensAt The first second of the reveal window.
    /// @param closesAt Its last second.
    error NotRevealWindow(uint256 projectId, uint16 round, uint64 opensAt, uint64 closesAt);
    /// @notice The trainer has no commitment to reveal in this round (never committed, or revealed already).
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    error NothingToReveal(uint256 projectId, uint16 round, address trainer);
    /// @notice The revealed sha256 and salt do not hash to the trainer's commitment.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    error CommitmentMismatch(uint256 projectId, uint16 round, address trainer);
    /// @notice A round's validation shard can be revealed only once its commits have closed.
    /// @param projectId The project.
    /// @param round The round.
    /// @param closesAt When its commit window closes.
    error CommitsStillOpen(uint256 projectId, uint16 round, uint64 closesAt);
    /// @notice The round's validation shard was revealed already.
    /// @param projectId The project.
    /// @param round The round.
    error ValidationAlreadyRevealed(uint256 projectId, uint16 round);
    /// @notice The shard's sha256 and the proof do not lead to the project's validation root.
    /// @param projectId The project.
    /// @param round The round.
    error InvalidValidationProof(uint256 projectId, uint16 round);
    /// @notice The round cannot be finalized before its validation shard is revealed.
    /// @param projectId The project.
    /// @param round The round.
    error ValidationNotRevealed(uint256 projectId, uint16 round);
    /// @notice Only the project's aggregator may finalize rounds.
    /// @param projectId The project.
    /// @param caller Who tried.
    error NotAggregator(uint256 projectId, address caller);
    /// @notice The round cannot be finalized yet: before its reveal window ends, unless commits have closed and
    /// every committer revealed.
    /// @param projectId The project.
    /// @param round The round.
    /// @param closesAt When its reveal window ends.
    error RoundStillOpen(uint256 projectId, uint16 round, uint64 closesAt);
    /// @notice The aggregator's deadline has passed: only `cancel` remains.
    /// @param projectId The project.
    /// @param round The round.
    /// @param deadline The deadline that passed.
    error AggregationDeadlinePassed(uint256 projectId, uint16 round, uint64 deadline);
    /// @notice `trainers` and `scores` differ in length.
    /// @param trainers The number of trainers.
    /// @param scores The number of scores.
    error LengthMismatch(uint256 trainers, uint256 scores);
    /// @notice The result does not list exactly the round's revealers.
    /// @param projectId The project.
    /// @param round The round.
    /// @param submitters How many revealed.
    /// @param listed How many the result lists.
    error SubmitterCountMismatch(uint256 projectId, uint16 round, uint256 submitters, uint256 listed);
    /// @notice `trainers` is not strictly ascending.
    /// @param index The first position out of order.
    error TrainersNotSorted(uint256 index);
    /// @notice The result lists a trainer that did not reveal an update in the round.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    error NotSubmitter(uint256 projectId, uint16 round, address trainer);
    /// @notice `flagged` names a trainer that is not among `trainers` (or is out of order).
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    error FlaggedNotSubmitter(uint256 projectId, uint16 round, address trainer);
    /// @notice A flagged trainer was given a non-zero score.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    /// @param score The score given.
    error FlaggedTrainerScored(uint256 projectId, uint16 round, address trainer, uint64 score);
    /// @notice The aggregator's deadline has not passed: the project cannot be cancelled yet.
    /// @param projectId The project.
    /// @param round The open round.
    /// @param deadline The aggregator's deadline.
    error DeadlineNotPassed(uint256 projectId, uint16 round, uint64 deadline);
    /// @notice The project was created with challengeWindow == 0.
    /// @param projectId The project.
    error ChallengesDisabled(uint256 projectId);
    /// @notice The round has not been finalized.
    /// @param projectId The project.
    /// @param round The round.
    error RoundNotFinalized(uint256 projectId, uint16 round);
    /// @notice The round was challenged before (each round can be challenged once).
    /// @param projectId The project.
    /// @param round The round.
    error AlreadyChallenged(uint256 projectId, uint16 round);
    /// @notice The round's challenge window has closed.
    /// @param projectId The project.
    /// @param round The round.
    /// @param closedAt When it closed.
    error ChallengeWindowClosed(uint256 projectId, uint16 round, uint64 closedAt);
    /// @notice A challenge must carry exactly the project's challenge bond.
    /// @param sent The wei sent.
    /// @param required The bond.
    error WrongBond(uint256 sent, uint256 required);
    /// @notice Only the project's arbiter may rule.
    /// @param projectId The project.
    /// @param caller Who tried.
    error NotArbiter(uint256 projectId, address caller);
    /// @notice The round has no open challenge.
    /// @param projectId The project.
    /// @param round The round.
    error NoOpenChallenge(uint256 projectId, uint16 round);
    /// @notice The arbiter may still rule: the challenge cannot lapse yet.
    /// @param projectId The project.
    /// @param round The round.
    /// @param until When the arbitration period ends.
    error ArbitrationPending(uint256 projectId, uint16 round, uint64 until);
    /// @notice Claims are not open (the project is active, a challenge is open, or a round's window has not
    /// passed).
    /// @param projectId The project.
    error ClaimsNotOpen(uint256 projectId);
    /// @notice The account has claimed already.
    /// @param projectId The project.
    /// @param account The account.
    error AlreadyClaimed(uint256 projectId, address account);
    /// @notice The project owes the account nothing.
    /// @param projectId The project.
    /// @param account The account.
    error NothingToClaim(uint256 projectId, address account);
    /// @notice Too little gas left to give a committee call its whole allowance (send more gas).
    /// @param gasLeft The gas left.
    /// @param needed The reserve needed.
    error CommitteeGasTooLow(uint256 gasLeft, uint256 needed);
    // ------------------------------------------------------------------------------------------- functions

    /// @notice Create a project and escrow msg.value as its reward pool; round 0 opens now.
    /// @param p The project's parameters.
    /// @return projectId The new project's id (ids start at 1).
    function createProject(ProjectParams calldata p) external payable returns (uint256 projectId);

    /// @notice Join a project with msg.value as stake.
    /// @param projectId The project to join.
    function register(uint256 projectId) external payable;

    /// @notice Commit to the caller's update for the open round, within its commit window.
    /// @param projectId The project.
    /// @param round The open round.
    /// @param commitment keccak256(abi.encode(block.chainid, address(market), projectId, uint16 round, address
    /// trainer, bytes32 updateSha256, bytes32 salt)).
    function commitUpdate(uint256 projectId, uint16 round, bytes32 commitment) external;

    /// @notice Reveal the update the caller committed to, within the round's reveal window.
    /// @param projectId The project.
    /// @param round The open round.
    /// @param cid CID of the update's bytes (which the trainer stores now, not before).
    /// @param sha256Digest sha256 of those bytes.
    /// @param salt The salt of the commitment.
    function revealUpdate(uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest, bytes32 salt)
        external;

    /// @notice Reveal the open round's validation shard once its commits have closed (anyone holding it).
    /// @param projectId The project.
    /// @param round The open round.
    /// @param cid CID of the shard's bytes.
    /// @param sha256Digest sha256 of those bytes.
    /// @param proof The Merkle proof of (round, sha256Digest) under the project's validation root.
    function revealValidation(
        uint256 projectId,
        uint16 round,
        string calldata cid,
        bytes32 sha256Digest,
        bytes32[] calldata proof
    ) external;

    /// @notice Post the open round's result (the aggregator only).
    /// @param projectId The project.
    /// @param round The open round.
    /// @param r The result.
    function finalizeRound(uint256 projectId, uint16 round, RoundResult calldata r) external;

    /// @notice Cancel a project whose aggregator missed the open round's deadline (anyone).
    /// @param projectId The project.
    function cancel(uint256 projectId) external;

    /// @notice Dispute a finalized round, with exactly the project's challenge bond.
    /// @param projectId The project.
    /// @param round The finalized round.
    function challenge(uint256 projectId, uint16 round) external payable;

    /// @notice The arbiter's ruling on an open challenge.
    /// @param projectId The project.
    /// @param round The challenged round.
    /// @param upheld Whether the challenge is right.
    function resolveChallenge(uint256 projectId, uint16 round, bool upheld) external;

    /// @notice Close a challenge the arbiter left unresolved for ARBITRATION_PERIOD (anyone).
    /// @param projectId The project.
    /// @param round The challenged round.
    function expireChallenge(uint256 projectId, uint16 round) external;

    /// @notice Pull everything the project owes the caller.
    /// @param projectId The project.
    /// @return amount Wei sent to the caller.
    function claim(uint256 projectId) external returns (uint256 amount);

    /// @notice A project as stored.
    /// @param projectId The project.
    /// @return project Its record.
    function getProject(uint256 projectId) external view returns (Project memory project);

    /// @notice A round as stored.
    /// @param projectId The project.
    /// @param round The round.
    /// @return rd Its record.
    function getRound(uint256 projectId, uint16 round) external view returns (Round memory rd);

    /// @notice A trainer's standing in a project.
    /// @param projectId The project.
    /// @param trainer The trainer.
    /// @return standing Its record (zeros if not registered).
    function getTrainer(uint256 projectId, address trainer) external view returns (Trainer memory standing);

    /// @notice A trainer's entry in a round.
    /// @param projectId The project.
    /// @param round The round.
    /// @param trainer The trainer.
    /// @return entry Its record.
    function getSubmission(uint256 projectId, uint16 round, address trainer)
        external
        view
        returns (Submission memory entry);

    /// @notice Wei `claim` would send `account` now.
    /// @param projectId The project.
    /// @param account The account.
    /// @return amount The wei (0 if claims are not open or nothing is owed).
    function claimable(uint256 projectId, address account) external view returns (uint256 amount);

    /// @notice The digest a round result commits to, as `finalizeRound` computes it.
    /// @param projectId The project.
    /// @param round The round.
    /// @param r The result.
    /// @return digest keccak256(abi.encode(chainid, market, projectId, round, modelSha256,
    /// keccak256(abi.encode(trainers, scores, flagged)), reportSha256)).
    function resultDigestOf(uint256 projectId, uint16 round, RoundResult calldata r)
        external
        view
        returns (bytes32 digest);
}
