// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IRoundAttestor, ITrainingMarket} from "./ITrainingMarket.sol";

/// @title TrainingMarket: proof-of-contribution marketplace for collaborative model training
/// @notice An owner escrows a reward pool; trainers stake, submit one model update per round, and are paid by the
/// contribution scores an aggregator posts. Every wei escrowed leaves by rule: the owner cannot take the pool
/// back by stalling (missed deadlines cancel the project and pay submitted work), a round can be challenged and
/// reversed by a named arbiter, and trainers flagged often enough lose part of their stake (burned). With a
/// verifier committee, a round whose result a quorum of independent verifiers recomputed and signed is final at
/// once: it cannot be challenged, and claims need not wait for its challenge window.
/// @dev Payouts are pull-only (`claim`), computed in O(1) per account: shares are credited to trainers when a
/// round is finalized. Types, events and errors live in {ITrainingMarket}. Burned wei (slashes, forfeited bonds)
/// are sent to BURN_ADDRESS so that a project's escrow always drains to exactly zero. A trainer without gas may
/// sign its submission (EIP-712) and let anyone relay it (`submitUpdateFor`).
contract TrainingMarket is ITrainingMarket, ReentrancyGuardTransient, EIP712, Nonces {
    using Address for address payable;

    /// @notice Basis points denominator of `slashBps`.
    uint16 public constant BPS = 10_000;
    /// @notice Upper bound on `maxTrainers`, so that `finalizeRound` for a full project fits in a block.
    uint16 public constant MAX_TRAINERS = 1_000;
    /// @notice Longest accepted CID (CIDv1 base32 sha2-256 is 59 characters).
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice How long the arbiter has to rule on a challenge before anyone may let it lapse.
    uint64 public constant ARBITRATION_PERIOD = 7 days;
    /// @notice Where slashed stakes and forfeited bonds go, so nobody profits from a slash or a rejected challenge
    /// (the conventional 0x…dEaD rather than address(0), which dev chains use as the fee recipient).
    address payable public constant BURN_ADDRESS = payable(0x000000000000000000000000000000000000dEaD);
    /// @notice Gas each call into the committee may use (VerifierCommittee needs about 33k to pin a snapshot
    /// and 10k to answer `isAttested`), so a misbehaving committee can never take a caller's whole budget.
    uint256 public constant COMMITTEE_CALL_GAS = 100_000;
    /// @notice What must be left before a committee call: COMMITTEE_CALL_GAS plus the 1/64 that EIP-150 keeps
    /// back plus the call's own overhead, so that the committee gets all of COMMITTEE_CALL_GAS.
    uint256 public constant COMMITTEE_GAS_RESERVE = COMMITTEE_CALL_GAS + COMMITTEE_CALL_GAS / 63 + 10_000;
    /// @notice EIP-712 type of a relayed submission (`cid` is hashed as EIP-712 hashes strings).
    bytes32 public constant SUBMIT_UPDATE_TYPEHASH = keccak256(
        "SubmitUpdate(address trainer,uint256 projectId,uint16 round,string cid,bytes32 sha256,uint256 nonce,uint256 deadline)"
    );

    /// @notice The verifier committee whose quorum attestations make rounds final before their challenge window
    /// ends (see {VerifierCommittee}); zero when this market has none. Set once: it is trusted like the code.
    IRoundAttestor public immutable committee;

    /// @notice Number of projects created; ids run 1..projectCount.
    uint256 public projectCount;

    mapping(uint256 projectId => Project) private _projects;
    mapping(uint256 projectId => mapping(uint16 round => Round)) private _rounds;
    mapping(uint256 projectId => mapping(address trainer => Trainer)) private _trainers;
    mapping(uint256 projectId => mapping(uint16 round => mapping(address trainer => Submission))) private
        _submissions;
    mapping(uint256 projectId => uint16[]) private _reversed;
    mapping(uint256 projectId => mapping(address challenger => uint96)) private _bondRefunds;

    /// @param committee_ A contract implementing {IRoundAttestor}, or address(0) for a market without a committee
    /// (then rounds become final only when their challenge window ends, as before).
    constructor(address committee_) EIP712("trustmarket TrainingMarket", "1") {
        // A high-level call to an address without code reverts before `try` can catch it.
        if (committee_ != address(0) && committee_.code.length == 0) revert InvalidParameter("committee");
        committee = IRoundAttestor(committee_);
    }

    // ------------------------------------------------------------------ owner

    /// @notice Create a project and escrow msg.value as its reward pool; round 0 opens now.
    /// @param p The project's parameters (see {ITrainingMarket-ProjectParams}).
    /// @return projectId The new project's id (ids start at 1).
    function createProject(ProjectParams calldata p) external payable nonReentrant returns (uint256 projectId) {
        _checkParams(p);
        if (msg.value == 0) revert EmptyPool();
        if (msg.value > type(uint96).max) revert AmountTooLarge(msg.value);
        uint96 pool = uint96(msg.value);
        projectId = ++projectCount;
        Project storage pr = _projects[projectId];
        pr.owner = msg.sender;
        pr.roundOpenedAt = uint64(block.timestamp);
        pr.rounds = p.rounds;
        pr.aggregator = p.aggregator;
        pr.roundDuration = p.roundDuration;
        pr.aggregationWindow = p.aggregationWindow;
        pr.status = Status.Active;
        pr.arbiter = p.arbiter;
        pr.challengeWindow = p.challengeWindow;
        pr.maxTrainers = p.maxTrainers;
        pr.slashAfterFlags = p.slashAfterFlags;
        pr.slashBps = p.slashBps;
        pr.pool = pool;
        pr.minStake = p.minStake;
        pr.challengeBond = p.challengeBond;
        pr.escrow = pool;
        pr.initialModelSha256 = p.initialModelSha256;
        pr.configSha256 = p.configSha256;
        pr.initialModelCid = p.initialModelCid;
        pr.configCid = p.configCid;
        _emitCreated(projectId, pool, p);
        emit RoundOpened(projectId, 0, uint64(block.timestamp));
    }

    // ---------------------------------------------------------------- trainers

    /// @notice Join a project with msg.value as stake (>= minStake). Open while the project is active and its
    /// last round's submission window has not closed; the aggregator and the arbiter may not train.
    /// @param projectId The project to join.
    function register(uint256 projectId) external payable nonReentrant {
        Project storage p = _activeProject(projectId);
        if (p.currentRound + 1 == p.rounds && block.timestamp > _windowEnd(p)) revert RegistrationClosed(projectId);
        if (msg.value < p.minStake) revert StakeTooLow(projectId, msg.value, p.minStake);
        if (msg.sender == p.aggregator || msg.sender == p.arbiter) revert ConflictOfInterest(projectId, msg.sender);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (t.registered) revert AlreadyRegistered(projectId, msg.sender);
        if (p.trainerCount >= p.maxTrainers) revert ProjectFull(projectId, p.maxTrainers);
        // Checked add: the project's escrow (pool + stakes + bonds) must fit in uint96.
        uint96 stake = _toAmount(msg.value);
        p.escrow = _toAmount(uint256(p.escrow) + stake);
        p.trainerCount += 1;
        t.stake = stake;
        t.registered = true;
        emit TrainerRegistered(projectId, msg.sender, stake);
    }

    /// @notice Record this trainer's update for the open round (once per round, within its submission window).
    /// @param projectId The project.
    /// @param round The open round (reverts with WrongRound otherwise).
    /// @param cid CID of the update's bytes (safetensors) in the content store.
    /// @param sha256Digest sha256 of those bytes.
    function submitUpdate(uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest)
        external
        nonReentrant
    {
        _submitUpdate(msg.sender, projectId, round, cid, sha256Digest);
    }

    /// @notice Record `trainer`'s update on the strength of its EIP-712 signature, so that a trainer without gas
    /// can submit through a relayer. Then exactly the checks and effects of `submitUpdate` for `trainer`.
    /// @dev Anyone may relay; the signature binds the trainer, project, round, CID, digest, the trainer's nonce
    /// (`nonces(trainer)`, consumed here, so a replay reverts) and a deadline. ERC-1271 wallets are accepted.
    /// UpdateSubmitted names the trainer, never the relayer.
    /// @param trainer The registered trainer whose update this is.
    /// @param projectId The project.
    /// @param round The open round.
    /// @param cid CID of the update's bytes (safetensors) in the content store.
    /// @param sha256Digest sha256 of those bytes.
    /// @param deadline Unix time after which the signature is void.
    /// @param signature `trainer`'s signature over SubmitUpdate(trainer, projectId, round, cid, sha256,
    /// nonces(trainer), deadline) under this contract's domain ("trustmarket TrainingMarket", "1").
    function submitUpdateFor(
        address trainer,
        uint256 projectId,
        uint16 round,
        string calldata cid,
        bytes32 sha256Digest,
        uint256 deadline,
        bytes calldata signature
    ) external nonReentrant {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        bytes32 digest = _submissionDigest(trainer, projectId, round, keccak256(bytes(cid)), sha256Digest, deadline);
        if (!SignatureChecker.isValidSignatureNow(trainer, digest, signature)) revert InvalidSignature(trainer);
        _submitUpdate(trainer, projectId, round, cid, sha256Digest);
    }

    // -------------------------------------------------------------- aggregator

    /// @notice Post the open round's result: new model, per-submitter scores, flagged trainers and the report.
    /// Allowed once the submission window has closed, or earlier once every registered trainer has submitted,
    /// and never past the aggregation deadline (then only `cancel` remains). Credits each trainer
    /// floor(roundPool * score / sum(scores)); the dust, or the whole round pool if every score is 0, goes to the
    /// owner's refund. Opens the next round, or completes the project after the last one. Last, if the market
    /// has a committee, pins the committee snapshot that may attest this result (see {_pinSnapshot}).
    /// @param projectId The project.
    /// @param round The open round.
    /// @param r The result (see {ITrainingMarket-RoundResult}: trainers sorted ascending, exactly the submitters).
    function finalizeRound(uint256 projectId, uint16 round, RoundResult calldata r) external nonReentrant {
        Project storage p = _activeProject(projectId);
        if (msg.sender != p.aggregator) revert NotAggregator(projectId, msg.sender);
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
        _checkFinalizeTiming(projectId, p, round);
        _checkContent(r.modelCid, r.modelSha256);
        _checkContent(r.reportCid, r.reportSha256);
        if (r.scores.length != r.trainers.length) revert LengthMismatch(r.trainers.length, r.scores.length);
        if (r.trainers.length != p.roundSubmissions) {
            revert SubmitterCountMismatch(projectId, round, p.roundSubmissions, r.trainers.length);
        }
        uint256 scoreSum = _checkSubmitters(projectId, round, r);
        uint96 roundPool = _roundPool(p, round);
        uint96 allocated = _allocate(projectId, round, r, roundPool, scoreSum);
        bytes32 digest = resultDigestOf(projectId, round, r);

        Round storage rd = _rounds[projectId][round];
        rd.openedAt = p.roundOpenedAt;
        rd.finalizedAt = uint64(block.timestamp);
        rd.allocated = allocated;
        rd.submitters = uint16(r.trainers.length);
        rd.flaggedCount = uint16(r.flagged.length);
        rd.resultDigest = digest;
        rd.modelSha256 = r.modelSha256;
        rd.reportSha256 = r.reportSha256;
        rd.modelCid = r.modelCid;
        rd.reportCid = r.reportCid;

        p.allocatedPool += roundPool;
        p.ownerRefund += roundPool - allocated;
        p.totalSubmissions += uint32(r.trainers.length);
        p.totalFlags += uint32(r.flagged.length);
        p.lastFinalizedAt = uint64(block.timestamp);
        p.roundSubmissions = 0;
        p.currentRound = round + 1;
        _emitFinalized(projectId, round, digest, r, allocated, roundPool - allocated);
        if (round + 1 == p.rounds) {
            p.status = Status.Completed;
            emit ProjectCompleted(projectId);
        } else {
            p.roundOpenedAt = uint64(block.timestamp);
            emit RoundOpened(projectId, round + 1, uint64(block.timestamp));
        }
        // The only interaction, after every effect (the committee reads the digest stored above).
        _pinSnapshot(projectId, round);
    }

    // ---------------------------------------------------------------- liveness

    /// @notice Cancel a project whose aggregator missed the open round's deadline (submission window end +
    /// aggregationWindow). Finalized rounds keep their allocations; the rest of the pool goes to trainers pro
    /// rata to their unflagged submissions (all rounds, the open one included), the rounding remainder (or all
    /// of it if nobody submitted) to the owner; stakes return less slashes already due. Callable by anyone.
    /// @param projectId The project.
    function cancel(uint256 projectId) external nonReentrant {
        Project storage p = _activeProject(projectId);
        uint64 deadline = _windowEnd(p) + p.aggregationWindow;
        if (block.timestamp <= deadline) revert DeadlineNotPassed(projectId, p.currentRound, deadline);
        _cancel(projectId, p, CancelReason.AggregatorMissedDeadline);
    }

    // -------------------------------------------------------------- challenges

    /// @notice Dispute a finalized round within challengeWindow of its finalization, with exactly challengeBond.
    /// Freezes every payout of the project until the arbiter rules (or the challenge lapses). A round the
    /// committee attested cannot be challenged (RoundAlreadyAttested): a quorum of verifiers has vouched for it.
    /// @param projectId The project.
    /// @param round The finalized round disputed (each round can be challenged once).
    function challenge(uint256 projectId, uint16 round) external payable nonReentrant {
        Project storage p = _existingProject(projectId);
        if (p.challengeWindow == 0) revert ChallengesDisabled(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.finalizedAt == 0) revert RoundNotFinalized(projectId, round);
        if (rd.challenge != ChallengeState.None) revert AlreadyChallenged(projectId, round);
        uint64 closesAt = rd.finalizedAt + p.challengeWindow;
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(projectId, round, closesAt);
        if (msg.value != p.challengeBond) revert WrongBond(msg.value, p.challengeBond);
        if (_isAttested(projectId, round)) revert RoundAlreadyAttested(projectId, round);
        p.escrow = _toAmount(uint256(p.escrow) + msg.value);
        p.openChallenges += 1;
        rd.challenge = ChallengeState.Open;
        rd.challenger = msg.sender;
        rd.challengedAt = uint64(block.timestamp);
        emit ChallengeOpened(projectId, round, msg.sender, uint96(msg.value));
    }

    /// @notice The arbiter's ruling. Upheld: the round's allocations are reversed, the project is cancelled by
    /// the liveness rule (if not already) and the bond is owed back to the challenger. Rejected: the bond is
    /// burned (not paid to anyone, so neither the arbiter's friends nor the aggregator gain by a rejection).
    /// @param projectId The project.
    /// @param round The challenged round.
    /// @param upheld Whether the challenge is right.
    function resolveChallenge(uint256 projectId, uint16 round, bool upheld) external nonReentrant {
        Project storage p = _existingProject(projectId);
        if (msg.sender != p.arbiter) revert NotArbiter(projectId, msg.sender);
        Round storage rd = _rounds[projectId][round];
        if (rd.challenge != ChallengeState.Open) revert NoOpenChallenge(projectId, round);
        p.openChallenges -= 1;
        uint96 bond = p.challengeBond;
        emit ChallengeResolved(projectId, round, upheld);
        if (upheld) {
            rd.challenge = ChallengeState.Upheld;
            _bondRefunds[projectId][rd.challenger] += bond;
            _reverse(projectId, p, rd, round);
            if (p.status != Status.Cancelled) _cancel(projectId, p, CancelReason.ChallengeUpheld);
        } else {
            rd.challenge = ChallengeState.Rejected;
            p.escrow -= bond;
            emit Burned(projectId, rd.challenger, bond);
            BURN_ADDRESS.sendValue(bond);
        }
    }

    /// @notice Close a challenge the arbiter left unresolved for ARBITRATION_PERIOD: the round stands and the
    /// bond is owed back to the challenger (an absent arbiter must not freeze the escrow forever). Anyone.
    /// @param projectId The project.
    /// @param round The challenged round.
    function expireChallenge(uint256 projectId, uint16 round) external nonReentrant {
        Project storage p = _existingProject(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.challenge != ChallengeState.Open) revert NoOpenChallenge(projectId, round);
        uint64 until = rd.challengedAt + ARBITRATION_PERIOD;
        if (block.timestamp <= until) revert ArbitrationPending(projectId, round, until);
        p.openChallenges -= 1;
        rd.challenge = ChallengeState.Lapsed;
        _bondRefunds[projectId][rd.challenger] += p.challengeBond;
        emit ChallengeLapsed(projectId, round);
    }

    // ------------------------------------------------------------------ payout

    /// @notice Pull everything this project owes the caller, in every role it holds: as a trainer, reward +
    /// stake - slash (the slash is burned); as the owner, the refund; as a challenger, bonds owed back. Open once
    /// the project is completed or cancelled, no challenge is open and every round that still stands is final:
    /// attested by the committee, or past its challenge window.
    /// @param projectId The project.
    /// @return amount Wei sent to the caller.
    function claim(uint256 projectId) external nonReentrant returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(projectId, p)) revert ClaimsNotOpen(projectId);
        Trainer storage t = _trainers[projectId][msg.sender];
        bool asTrainer = t.registered && !t.claimed;
        bool asOwner = msg.sender == p.owner && !p.ownerClaimed;
        uint96 bond = _bondRefunds[projectId][msg.sender];
        if (!asTrainer && !asOwner && bond == 0) {
            if (t.registered || msg.sender == p.owner) revert AlreadyClaimed(projectId, msg.sender);
            revert NothingToClaim(projectId, msg.sender);
        }
        uint256 slashed;
        if (asTrainer) {
            (amount, slashed) = _trainerPayout(projectId, p, t, msg.sender);
            t.claimed = true;
        }
        if (asOwner) {
            amount += _ownerPayout(p);
            p.ownerClaimed = true;
        }
        if (bond != 0) {
            amount += bond;
            _bondRefunds[projectId][msg.sender] = 0;
        }
        // Effects before interactions; an underflow here would mean paying out more than the project holds.
        p.escrow -= uint96(amount + slashed);
        emit Claimed(projectId, msg.sender, amount, slashed);
        if (slashed != 0) {
            emit Burned(projectId, msg.sender, slashed);
            BURN_ADDRESS.sendValue(slashed);
        }
        if (amount != 0) payable(msg.sender).sendValue(amount);
    }

    // ------------------------------------------------------------------- views

    /// @notice A project as stored. Reverts with UnknownProject for an unknown id.
    function getProject(uint256 projectId) external view returns (Project memory) {
        return _existingProject(projectId);
    }

    /// @notice A round as stored; for the open round only `openedAt` is set.
    function getRound(uint256 projectId, uint16 round) external view returns (Round memory rd) {
        Project storage p = _existingProject(projectId);
        rd = _rounds[projectId][round];
        if (round == p.currentRound && p.status == Status.Active) rd.openedAt = p.roundOpenedAt;
    }

    /// @notice A trainer's standing (all zeros if not registered).
    function getTrainer(uint256 projectId, address trainer) external view returns (Trainer memory) {
        _existingProject(projectId);
        return _trainers[projectId][trainer];
    }

    /// @notice A trainer's entry in a round (submitted, flagged, credited share).
    function getSubmission(uint256 projectId, uint16 round, address trainer)
        external
        view
        returns (Submission memory)
    {
        _existingProject(projectId);
        return _submissions[projectId][round][trainer];
    }

    /// @notice Rounds whose allocations were reversed by an upheld challenge.
    function reversedRounds(uint256 projectId) external view returns (uint16[] memory) {
        _existingProject(projectId);
        return _reversed[projectId];
    }

    /// @notice Wei `claim` would send `account` now (0 if claims are not open or nothing is owed).
    function claimable(uint256 projectId, address account) external view returns (uint256 amount) {
        Project storage p = _existingProject(projectId);
        if (!_claimsOpen(projectId, p)) return 0;
        Trainer storage t = _trainers[projectId][account];
        if (t.registered && !t.claimed) (amount,) = _trainerPayout(projectId, p, t, account);
        if (account == p.owner && !p.ownerClaimed) amount += _ownerPayout(p);
        amount += _bondRefunds[projectId][account];
    }

    /// @notice Whether `claim` is open for the project.
    function claimsOpen(uint256 projectId) external view returns (bool) {
        return _claimsOpen(projectId, _existingProject(projectId));
    }

    /// @notice The open round's submission-window end and the aggregator's deadline.
    function roundDeadlines(uint256 projectId) external view returns (uint64 windowEnd, uint64 aggregatorDeadline) {
        Project storage p = _existingProject(projectId);
        windowEnd = _windowEnd(p);
        aggregatorDeadline = windowEnd + p.aggregationWindow;
    }

    /// @notice The stored result digest of a finalized round (zero if not finalized).
    function roundResultDigest(uint256 projectId, uint16 round) external view returns (bytes32) {
        _existingProject(projectId);
        return _rounds[projectId][round].resultDigest;
    }

    /// @notice Whether a round's result can no longer change: finalized, not reversed, no open challenge, and
    /// either attested by the committee or past its challenge window.
    function isRoundFinal(uint256 projectId, uint16 round) external view returns (bool) {
        Project storage p = _existingProject(projectId);
        Round storage rd = _rounds[projectId][round];
        if (rd.finalizedAt == 0) return false;
        if (rd.challenge == ChallengeState.Open || rd.challenge == ChallengeState.Upheld) return false;
        return block.timestamp > uint256(rd.finalizedAt) + p.challengeWindow || _isAttested(projectId, round);
    }

    /// @notice Whether the committee attests the round's current result (false without a committee).
    function isRoundAttested(uint256 projectId, uint16 round) external view returns (bool) {
        _existingProject(projectId);
        return _isAttested(projectId, round);
    }

    /// @notice The digest a round result commits to, as `finalizeRound` computes it (and the verifier committee
    /// signs): keccak256(abi.encode(chainid, this, projectId, round, modelSha256,
    /// keccak256(abi.encode(trainers, scores, flagged)), reportSha256)).
    function resultDigestOf(uint256 projectId, uint16 round, RoundResult calldata r) public view returns (bytes32) {
        bytes32 allocation = keccak256(abi.encode(r.trainers, r.scores, r.flagged));
        return keccak256(
            abi.encode(block.chainid, address(this), projectId, round, r.modelSha256, allocation, r.reportSha256)
        );
    }

    // ---------------------------------------------------------------- internal

    function _checkParams(ProjectParams calldata p) private pure {
        _checkContent(p.initialModelCid, p.initialModelSha256);
        _checkContent(p.configCid, p.configSha256);
        if (p.rounds == 0) revert InvalidParameter("rounds");
        if (p.roundDuration == 0) revert InvalidParameter("roundDuration");
        if (p.aggregationWindow == 0) revert InvalidParameter("aggregationWindow");
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert InvalidParameter("maxTrainers");
        if (p.aggregator == address(0)) revert InvalidParameter("aggregator");
        if (p.slashBps > BPS) revert InvalidParameter("slashBps");
        if (p.challengeWindow != 0) {
            // A free challenge would let anyone freeze payouts; an arbiter who is the aggregator judges itself.
            if (p.arbiter == address(0) || p.arbiter == p.aggregator) revert InvalidParameter("arbiter");
            if (p.challengeBond == 0) revert InvalidParameter("challengeBond");
        }
    }

    function _emitCreated(uint256 projectId, uint96 pool, ProjectParams calldata p) private {
        emit ProjectCreated(
            projectId,
            msg.sender,
            p.aggregator,
            p.arbiter,
            pool,
            p.rounds,
            p.initialModelCid,
            p.initialModelSha256,
            p.configCid,
            p.configSha256
        );
    }

    function _emitFinalized(
        uint256 projectId,
        uint16 round,
        bytes32 digest,
        RoundResult calldata r,
        uint96 allocated,
        uint96 dust
    ) private {
        emit RoundFinalized(
            projectId, round, digest, r.modelCid, r.modelSha256, r.reportCid, r.reportSha256, allocated, dust
        );
        emit RoundScored(projectId, round, r.trainers, r.scores, r.flagged);
    }

    function _checkContent(string calldata cid, bytes32 digest) private pure {
        uint256 length = bytes(cid).length;
        if (length == 0 || length > MAX_CID_LENGTH || digest == 0) revert InvalidContentReference(cid, digest);
    }

    function _checkFinalizeTiming(uint256 projectId, Project storage p, uint16 round) private view {
        uint64 closesAt = _windowEnd(p);
        uint64 deadline = closesAt + p.aggregationWindow;
        if (block.timestamp > deadline) revert AggregationDeadlinePassed(projectId, round, deadline);
        // Early finalization once every registered trainer has submitted, so a demo need not wait.
        bool everyoneSubmitted = p.roundSubmissions != 0 && p.roundSubmissions == p.trainerCount;
        if (block.timestamp <= closesAt && !everyoneSubmitted) revert RoundStillOpen(projectId, round, closesAt);
    }

    /// @dev One pass: trainers strictly ascending (no duplicates), each a submitter of this round, and the sorted
    /// `flagged` list merged against them (each flagged trainer listed, with score 0). Returns the score sum.
    function _checkSubmitters(uint256 projectId, uint16 round, RoundResult calldata r)
        private
        view
        returns (uint256 scoreSum)
    {
        mapping(address => Submission) storage subs = _submissions[projectId][round];
        uint256 k;
        address previous;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            if (i != 0 && trainer <= previous) revert TrainersNotSorted(i);
            if (!subs[trainer].submitted) revert NotSubmitter(projectId, round, trainer);
            if (k < r.flagged.length && r.flagged[k] == trainer) {
                if (r.scores[i] != 0) revert FlaggedTrainerScored(projectId, round, trainer, r.scores[i]);
                ++k;
            }
            scoreSum += r.scores[i];
            previous = trainer;
        }
        if (k != r.flagged.length) revert FlaggedNotSubmitter(projectId, round, r.flagged[k]);
    }

    /// @dev Credits floor(roundPool * score / scoreSum) to each trainer (never more than roundPool in total)
    /// and records each share and flag so that an upheld challenge can reverse them.
    function _allocate(uint256 projectId, uint16 round, RoundResult calldata r, uint96 roundPool, uint256 scoreSum)
        private
        returns (uint96 allocated)
    {
        mapping(address => Submission) storage subs = _submissions[projectId][round];
        mapping(address => Trainer) storage trainers = _trainers[projectId];
        uint256 k;
        for (uint256 i; i < r.trainers.length; ++i) {
            address trainer = r.trainers[i];
            bool flagged = k < r.flagged.length && r.flagged[k] == trainer;
            if (flagged) ++k;
            // roundPool < 2^96 and score < 2^64: the product fits; the quotient is <= roundPool.
            uint96 share = scoreSum == 0 ? 0 : uint96((uint256(roundPool) * r.scores[i]) / scoreSum);
            if (share == 0 && !flagged) continue;
            Trainer storage t = trainers[trainer];
            t.reward += share;
            if (flagged) t.flags += 1;
            Submission storage s = subs[trainer];
            s.share = share;
            s.flagged = flagged;
            allocated += share;
        }
    }

    function _reverse(uint256 projectId, Project storage p, Round storage rd, uint16 round) private {
        uint96 roundPool = _roundPool(p, round);
        // The round's pool becomes unallocated again; the owner's dust from it goes back with it.
        p.allocatedPool -= roundPool;
        p.ownerRefund -= roundPool - rd.allocated;
        p.totalFlags -= rd.flaggedCount;
        _reversed[projectId].push(round);
        emit RoundReversed(projectId, round, rd.allocated);
    }

    function _cancel(uint256 projectId, Project storage p, CancelReason reason) private {
        // The open round's submissions count as work for the liveness payout.
        p.totalSubmissions += p.roundSubmissions;
        p.roundSubmissions = 0;
        p.status = Status.Cancelled;
        emit ProjectCancelled(projectId, msg.sender, reason, p.currentRound);
    }

    /// @dev A trainer's reward (less reversed rounds, plus its liveness share if cancelled) + stake - slash.
    function _trainerPayout(uint256 projectId, Project storage p, Trainer storage t, address account)
        private
        view
        returns (uint256 amount, uint256 slashed)
    {
        uint256 reward = t.reward;
        uint256 flags = t.flags;
        // At most one entry per upheld challenge, and an upheld challenge cancels the project.
        uint16[] storage reversed = _reversed[projectId];
        for (uint256 i; i < reversed.length; ++i) {
            Submission storage s = _submissions[projectId][reversed[i]][account];
            reward -= s.share;
            if (s.flagged) flags -= 1;
        }
        if (p.status == Status.Cancelled) {
            (uint256 perWork,) = _livenessSplit(p);
            reward += perWork * (t.submissions - flags);
        }
        if (p.slashAfterFlags != 0 && flags >= p.slashAfterFlags) slashed = (uint256(t.stake) * p.slashBps) / BPS;
        amount = reward + t.stake - slashed;
    }

    function _ownerPayout(Project storage p) private view returns (uint256 amount) {
        amount = p.ownerRefund;
        if (p.status == Status.Cancelled) {
            (, uint256 remainder) = _livenessSplit(p);
            amount += remainder;
        }
    }

    /// @dev The unallocated pool split per unit of unflagged submitted work (floor), and what is left for the
    /// owner. Exact: perWork * work + remainder == unallocated, so the escrow drains to zero.
    function _livenessSplit(Project storage p) private view returns (uint256 perWork, uint256 remainder) {
        uint256 unallocated = p.pool - p.allocatedPool;
        uint256 work = p.totalSubmissions - p.totalFlags;
        if (work != 0) perWork = unallocated / work;
        remainder = unallocated - perWork * work;
    }

    /// @dev Completed or cancelled, no open challenge, and every standing round final. Rounds are finalized in
    /// order, so their windows end in order: once the last one's has passed, all have (no committee call), and
    /// otherwise only the rounds still inside their window need the committee, newest first.
    function _claimsOpen(uint256 projectId, Project storage p) private view returns (bool) {
        if (p.status != Status.Completed && p.status != Status.Cancelled) return false;
        if (p.openChallenges != 0) return false;
        uint256 window = p.challengeWindow;
        if (p.lastFinalizedAt == 0 || block.timestamp > p.lastFinalizedAt + window) return true;
        if (address(committee) == address(0)) return false;
        // Rounds 0..currentRound-1 are the finalized ones (in a cancelled project currentRound is still open).
        for (uint16 round = p.currentRound; round != 0;) {
            --round;
            Round storage rd = _rounds[projectId][round];
            if (block.timestamp > rd.finalizedAt + window) break;
            // A reversed round no longer stands; its pool is paid by the liveness rule.
            if (rd.challenge == ChallengeState.Upheld) continue;
            if (!_isAttested(projectId, round)) return false;
        }
        return true;
    }

    /// @dev Fixes the committee snapshot of the round just finalized, so nobody can join the committee between
    /// finalization and the first attestation. The committee is a trusted deployment parameter, but finalization
    /// must not depend on it: a pin that reverts (or runs out of its COMMITTEE_CALL_GAS) is reported and
    /// skipped, and VerifierCommittee then pins at the first attestation instead. The reserve check comes first
    /// so that a caller cannot make the pin fail on purpose by sending just too little gas.
    function _pinSnapshot(uint256 projectId, uint16 round) private {
        if (address(committee) == address(0)) return;
        _checkCommitteeGas();
        try committee.pinSnapshot{gas: COMMITTEE_CALL_GAS}(address(this), projectId, round) {}
        catch {
            emit CommitteePinFailed(projectId, round);
        }
    }

    /// @dev Whether the committee attests the round's current result. Anything but a well-formed `true` (a
    /// revert, running out of COMMITTEE_CALL_GAS, short or odd return data) reads as "not attested", so a broken
    /// committee only takes the market back to the challenge-window rule. The reserve check keeps a caller from
    /// starving the query to pass an attested round off as unattested (e.g. to challenge it).
    function _isAttested(uint256 projectId, uint16 round) private view returns (bool) {
        if (address(committee) == address(0)) return false;
        _checkCommitteeGas();
        (bool ok, bytes memory answer) = address(committee).staticcall{gas: COMMITTEE_CALL_GAS}(
            abi.encodeCall(IRoundAttestor.isAttested, (address(this), projectId, round))
        );
        return ok && answer.length == 32 && abi.decode(answer, (uint256)) == 1;
    }

    function _checkCommitteeGas() private view {
        uint256 left = gasleft();
        if (left < COMMITTEE_GAS_RESERVE) revert CommitteeGasTooLow(left, COMMITTEE_GAS_RESERVE);
    }

    function _roundPool(Project storage p, uint16 round) private view returns (uint96) {
        uint96 perRound = p.pool / p.rounds;
        // The division remainder rides on the last round, so trainers (not the owner) receive it.
        return round + 1 == p.rounds ? perRound + (p.pool % p.rounds) : perRound;
    }

    /// @dev `submitUpdate`'s checks and effects for `trainer` (the caller, or the signer of a relayed one).
    function _submitUpdate(address trainer, uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest)
        private
    {
        Project storage p = _activeProject(projectId);
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
        uint64 closesAt = _windowEnd(p);
        if (block.timestamp > closesAt) revert SubmissionWindowClosed(projectId, round, closesAt);
        _checkContent(cid, sha256Digest);
        Trainer storage t = _trainers[projectId][trainer];
        if (!t.registered) revert NotRegistered(projectId, trainer);
        Submission storage s = _submissions[projectId][round][trainer];
        if (s.submitted) revert AlreadySubmitted(projectId, round, trainer);
        s.submitted = true;
        t.submissions += 1;
        p.roundSubmissions += 1;
        emit UpdateSubmitted(projectId, round, trainer, cid, sha256Digest);
    }

    /// @dev The EIP-712 digest of a relayed submission; consumes `trainer`'s nonce (a reverted call restores it).
    /// A function of its own, so that submitUpdateFor's many calldata arguments stay within the stack.
    function _submissionDigest(
        address trainer,
        uint256 projectId,
        uint16 round,
        bytes32 cidHash,
        bytes32 sha256Digest,
        uint256 deadline
    ) private returns (bytes32) {
        uint256 nonce = _useNonce(trainer);
        return _hashTypedDataV4(
            keccak256(
                abi.encode(SUBMIT_UPDATE_TYPEHASH, trainer, projectId, round, cidHash, sha256Digest, nonce, deadline)
            )
        );
    }

    function _windowEnd(Project storage p) private view returns (uint64) {
        return p.roundOpenedAt + p.roundDuration;
    }

    function _existingProject(uint256 projectId) private view returns (Project storage p) {
        p = _projects[projectId];
        if (p.status == Status.None) revert UnknownProject(projectId);
    }

    function _activeProject(uint256 projectId) private view returns (Project storage p) {
        p = _existingProject(projectId);
        if (p.status != Status.Active) revert ProjectNotActive(projectId, p.status);
    }

    function _toAmount(uint256 value) private pure returns (uint96) {
        if (value > type(uint96).max) revert AmountTooLarge(value);
        return uint96(value);
    }
}
