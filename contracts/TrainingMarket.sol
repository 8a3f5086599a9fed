// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {MarketCommitteeHook} from "./market/MarketCommitteeHook.sol";
import {MarketDisputes} from "./market/MarketDisputes.sol";
import {MarketPayouts} from "./market/MarketPayouts.sol";
import {MarketRelay} from "./market/MarketRelay.sol";
import {MarketRounds} from "./market/MarketRounds.sol";
import {MarketSealing} from "./market/MarketSealing.sol";

/// @title TrainingMarket: proof-of-contribution marketplace for collaborative model training
/// @notice An owner escrows a reward pool; trainers stake, commit to one model update per round and reveal it once
/// commits close (so nobody can copy another's work), and are paid by the contribution scores an aggregator posts,
/// measured on a validation shard revealed only when the round's commits close. Every wei escrowed leaves by rule:
/// the owner can neither aggregate nor judge its own project, nor take the pool back by stalling (missed deadlines
/// cancel the project and pay revealed work by stake), a round can be challenged and reversed by a named arbiter
/// (the verifier committee members who attested it are then slashed), and trainers flagged often enough lose part
/// of their stake (burned).
/// @dev The contract is its modules, each an abstract contract on {MarketBase} (storage and shared checks):
/// {MarketRounds} (projects, finalization, liveness), {MarketSealing} (commit, reveal, validation shards),
/// {MarketDisputes} (challenges), {MarketPayouts} (claims), {MarketCommitteeHook} (the verifier committee) and
/// {MarketRelay} (calls relayed by a trusted ERC-2771 forwarder). Types, events and errors live in
/// {ITrainingMarket}. Payouts are pull-only. Burned wei (slashes, forfeited bonds) are sent to BURN_ADDRESS.
contract TrainingMarket is
    MarketRounds,
    MarketSealing,
    MarketDisputes,
    MarketPayouts,
    MarketCommitteeHook,
    MarketRelay
{
    /// @param committee_ A contract implementing {IRoundAttestor}, or address(0) for a market without a committee.
    /// @param forwarder_ The trusted ERC-2771 forwarder ({TrustmarketForwarder}), or address(0) for no relaying.
    constructor(address committee_, address forwarder_) MarketCommitteeHook(committee_) MarketRelay(forwarder_) {}

    // Every module acts for MarketRelay's sender: the signer of a forwarded call, else the caller.

    function _msgSender() internal view override(Context, MarketRelay) returns (address) {
        return MarketRelay._msgSender();
    }

    function _msgData() internal view override(Context, MarketRelay) returns (bytes calldata) {
        return MarketRelay._msgData();
    }

    function _contextSuffixLength() internal view override(Context, MarketRelay) returns (uint256) {
        return MarketRelay._contextSuffixLength();
    }
}
