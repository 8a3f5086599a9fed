// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ITrainingMarket} from "../../contracts/interfaces/ITrainingMarket.sol";
import {TrainingMarket} from "../../contracts/TrainingMarket.sol";
import {vm} from "./Vm.sol";

/// @title MarketHandler: the calls forge's invariant fuzzer makes against two projects of one TrainingMarket
/// @notice Registrations with any stake, sealed commitments and reveals, validation reveals, finalizations with
/// arbitrary scores and flags, time jumps, cancels, challenges, rulings, lapses and claims, by any of the cast, in
/// any order: most calls revert at most points, which is part of what is fuzzed. The handler keeps the books the
/// invariants check: wei in, wei paid out, wei burned, and whether any claim paid other than what `claimable`
/// said or went through while it should not have.
contract MarketHandler {
    uint16 internal constant ROUNDS = 3;
    uint32 internal constant COMMITS = 1_000;
    uint32 internal constant REVEALS = 400;
    uint32 internal constant AGGREGATION = 500;
    uint32 internal constant WINDOW = 300;
    uint96 internal constant BOND = 0.5 ether;
    address payable internal constant BURN = payable(0x000000000000000000000000000000000000dEaD);

    TrainingMarket public immutable market;
    address internal immutable aggregator = address(0xA66);
    address internal immutable arbiter = address(0xA2B);
    uint256[2] public projects;
    address[6] public cast; // four trainers and two challengers
    bytes32[3] internal shards;
    bytes32 internal root;

    uint256 public deposits;
    uint256 public payouts;
    uint256 public burns;
    uint256 public claims;
    bool public mispaid;
    bool public claimedTooEarly;

    constructor(TrainingMarket market_) payable {
        market = market_;
        for (uint256 i; i < cast.length; ++i) {
            cast[i] = address(uint160(0xC0FFEE00 + i));
            vm.deal(cast[i], 1_000 ether);
        }
        bytes32[3] memory leaves;
        for (uint16 r; r < ROUNDS; ++r) {
            shards[r] = keccak256(abi.encode("validation shard", r));
            leaves[r] = keccak256(bytes.concat(keccak256(abi.encode(r, shards[r]))));
        }
        root = _pair(_pair(leaves[0], leaves[1]), leaves[2]);
        projects[0] = _create(9 ether + 7, 0.1 ether, 2, 5_000);
        projects[1] = _create(1 ether, 0.3 ether, 1, 10_000);
    }

    receive() external payable {}

    // ------------------------------------------------------------------------------------------ fuzzed calls

    function register(uint256 which, uint256 who, uint256 stake) external {
        uint256 pid = projects[which % 2];
        address trainer = cast[who % 4];
        stake = 0.05 ether + (stake % 3 ether);
        vm.prank(trainer);
        try market.register{value: stake}(pid) {
            deposits += stake;
        } catch {}
    }

    function commit(uint256 which, uint256 who) external {
        uint256 pid = projects[which % 2];
        address trainer = cast[who % 4];
        uint16 round = market.getProject(pid).currentRound;
        // The commitment as ITrainingMarket documents it (the contract keeps its own copy private).
        bytes32 seal = keccak256(
            abi.encode(block.chainid, address(market), pid, round, trainer, _update(trainer, round), _salt(trainer, round))
        );
        vm.prank(trainer);
        try market.commitUpdate(pid, round, seal) {} catch {}
    }

    function reveal(uint256 which, uint256 who) external {
        uint256 pid = projects[which % 2];
        address trainer = cast[who % 4];
        uint16 round = market.getProject(pid).currentRound;
        vm.prank(trainer);
        try market.revealUpdate(pid, round, "bafkreiupdate", _update(trainer, round), _salt(trainer, round)) {} catch {}
    }

    function closeCommits(uint256 which) external {
        uint256 pid = projects[which % 2];
        ITrainingMarket.Project memory p = market.getProject(pid);
        uint256 commitEnd = uint256(p.roundOpenedAt) + p.roundDuration;
        if (block.timestamp <= commitEnd) vm.warp(commitEnd + 1);
        if (p.currentRound >= ROUNDS) return;
        try market.revealValidation(pid, p.currentRound, "bafkreishard", shards[p.currentRound], _proof(p.currentRound)) {}
            catch {}
    }

    function finalize(uint256 which, uint256 seed, uint256 flagMask) external {
        uint256 pid = projects[which % 2];
        uint16 round = market.getProject(pid).currentRound;
        address[] memory revealed = _revealers(pid, round);
        uint64[] memory scores = new uint64[](revealed.length);
        uint256 flags;
        for (uint256 i; i < revealed.length; ++i) {
            if (flagMask >> i & 1 == 1) ++flags;
            else scores[i] = uint64(uint256(keccak256(abi.encode(seed, i))) % (seed % 3 == 0 ? 11 : type(uint64).max));
        }
        address[] memory flagged = new address[](flags);
        uint256 k;
        for (uint256 i; i < revealed.length; ++i) {
            if (flagMask >> i & 1 == 1) flagged[k++] = revealed[i];
        }
        ITrainingMarket.RoundResult memory r = ITrainingMarket.RoundResult(
            "bafkreimodel", keccak256(abi.encode(seed)), revealed, scores, flagged, "bafkreireport", keccak256("r")
        );
        vm.prank(aggregator);
        try market.finalizeRound(pid, round, r) {} catch {}
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + 1 + (seconds_ % (COMMITS + REVEALS + AGGREGATION + 8 days)));
    }

    function cancel(uint256 which) external {
        _measured(address(0), projects[which % 2], abi.encodeCall(market.cancel, (projects[which % 2])), 0);
    }

    function challenge(uint256 which, uint256 back, uint256 who) external {
        uint256 pid = projects[which % 2];
        uint16 current = market.getProject(pid).currentRound;
        uint16 round = current > back % 2 ? uint16(current - 1 - back % 2) : 0;
        address challenger = cast[4 + who % 2];
        vm.prank(challenger);
        try market.challenge{value: BOND}(pid, round) {
            deposits += BOND;
        } catch {}
    }

    function resolve(uint256 which, bool upheld) external {
        uint256 pid = projects[which % 2];
        for (uint16 r; r < ROUNDS; ++r) {
            if (market.getRound(pid, r).challenge == ITrainingMarket.ChallengeState.Open) {
                _measured(arbiter, pid, abi.encodeCall(market.resolveChallenge, (pid, r, upheld)), 0);
                return;
            }
        }
    }

    function expire(uint256 which) external {
        uint256 pid = projects[which % 2];
        for (uint16 r; r < ROUNDS; ++r) {
            if (market.getRound(pid, r).challenge == ITrainingMarket.ChallengeState.Open) {
                _measured(address(0), pid, abi.encodeCall(market.expireChallenge, (pid, r)), 0);
                return;
            }
        }
    }

    /// @notice A claim by one of the cast (or the owner, this handler): it must pay exactly `claimable`, and only
    /// once the project has ended with no challenge open and every round's window over.
    function claim(uint256 which, uint256 who) external {
        uint256 pid = projects[which % 2];
        address account = who % 7 == 6 ? address(this) : cast[who % 7 % 6];
        ITrainingMarket.Project memory p = market.getProject(pid);
        bool mayClaim = (p.status == ITrainingMarket.Status.Completed || p.status == ITrainingMarket.Status.Cancelled)
            && p.openChallenges == 0 && (p.lastFinalizedAt == 0 || block.timestamp > uint256(p.lastFinalizedAt) + WINDOW);
        uint256 owed = market.claimable(pid, account);
        uint256 before = account.balance;
        bool ok = _measured(account, pid, abi.encodeCall(market.claim, (pid)), 0);
        if (!ok) return;
        ++claims;
        if (!mayClaim) claimedTooEarly = true;
        if (account.balance - before != owed) mispaid = true;
    }

    // ------------------------------------------------------------------------------------------- internals

    /// @dev Run a call of the market as `sender` (the handler itself when zero), booking what it paid out and
    /// burned; returns whether it went through.
    function _measured(address sender, uint256, bytes memory data, uint256 value) internal returns (bool ok) {
        uint256 held = address(market).balance;
        uint256 burned = BURN.balance;
        if (sender != address(0) && sender != address(this)) vm.prank(sender);
        (ok,) = address(market).call{value: value}(data);
        if (!ok) return false;
        uint256 burnt = BURN.balance - burned;
        burns += burnt;
        payouts += held + value - address(market).balance - burnt;
        deposits += value;
    }

    function _create(uint96 pool, uint96 minStake, uint16 slashAfter, uint16 slashBps) internal returns (uint256) {
        ITrainingMarket.ProjectParams memory p = ITrainingMarket.ProjectParams({
            initialModelCid: "bafkreimodel0",
            initialModelSha256: keccak256("model-0"),
            configCid: "bafkreiconfig",
            configSha256: keccak256("config"),
            validationRoot: root,
            rounds: ROUNDS,
            roundDuration: COMMITS,
            revealWindow: REVEALS,
            aggregationWindow: AGGREGATION,
            minStake: minStake,
            maxTrainers: 4,
            aggregator: aggregator,
            arbiter: arbiter,
            challengeWindow: WINDOW,
            challengeBond: BOND,
            slashAfterFlags: slashAfter,
            slashBps: slashBps
        });
        deposits += pool;
        return market.createProject{value: pool}(p);
    }

    function _revealers(uint256 pid, uint16 round) internal view returns (address[] memory revealed) {
        address[4] memory found;
        uint256 n;
        for (uint256 i; i < 4; ++i) {
            if (market.getSubmission(pid, round, cast[i]).revealed) found[n++] = cast[i];
        }
        revealed = new address[](n);
        for (uint256 i; i < n; ++i) {
            revealed[i] = found[i];
        }
        // Ascending, as the contract requires (insertion sort of at most four).
        for (uint256 i = 1; i < n; ++i) {
            for (uint256 j = i; j > 0 && revealed[j - 1] > revealed[j]; --j) {
                (revealed[j - 1], revealed[j]) = (revealed[j], revealed[j - 1]);
            }
        }
    }

    function _proof(uint16 round) internal view returns (bytes32[] memory proof) {
        bytes32[3] memory leaves;
        for (uint16 r; r < ROUNDS; ++r) {
            leaves[r] = keccak256(bytes.concat(keccak256(abi.encode(r, shards[r]))));
        }
        if (round == 2) {
            proof = new bytes32[](1);
            proof[0] = _pair(leaves[0], leaves[1]);
        } else {
            proof = new bytes32[](2);
            proof[0] = leaves[1 - round];
            proof[1] = leaves[2];
        }
    }

    function _update(address trainer, uint16 round) internal pure returns (bytes32) {
        return keccak256(abi.encode("update", trainer, round));
    }

    function _salt(address trainer, uint16 round) internal pure returns (bytes32) {
        return keccak256(abi.encode("salt", trainer, round));
    }

    function _pair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }
}

/// @title MarketInvariants: the money rules of TrainingMarket under forge's invariant fuzzer
/// @notice After every call of every run: the market's balance is what came in less what was paid out and burned,
/// and equals the sum of its projects' escrows; no claim ever paid other than what `claimable` said just before,
/// and none went through while a challenge was open, a round's window had not passed or the project had not ended.
contract MarketInvariants {
    TrainingMarket internal market;
    MarketHandler internal handler;

    function setUp() public {
        market = new TrainingMarket(address(0), address(0));
        vm.deal(address(this), 100 ether);
        handler = new MarketHandler{value: 20 ether}(market);
    }

    /// @notice The fuzzer calls the handler only.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function invariant_balance_is_deposits_minus_payouts_and_burns() public view {
        require(
            address(market).balance == handler.deposits() - handler.payouts() - handler.burns(),
            "the balance is not what came in less what left"
        );
    }

    function invariant_balance_is_the_sum_of_the_escrows() public view {
        uint256 escrows = market.getProject(handler.projects(0)).escrow + market.getProject(handler.projects(1)).escrow;
        require(address(market).balance == escrows, "the balance is not the sum of the escrows");
    }

    function invariant_every_claim_pays_exactly_what_was_owed() public view {
        require(!handler.mispaid(), "a claim paid other than claimable");
    }

    function invariant_no_claim_while_challenged_or_not_final() public view {
        require(!handler.claimedTooEarly(), "a claim went through too early");
    }
}
