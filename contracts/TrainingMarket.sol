// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {MarketCommitteeHook} from "./market/MarketCommitteeHook.sol";
import {MarketDisputes} from "./market/MarketDisputes.sol";
import {MarketPayouts} from "./market/MarketPayouts.sol";
import {MarketRelay} from "./market/MarketRelay.sol";
import {MarketRounds} from "./market/MarketRounds.sol";

/// @title TrainingMarket: proof-of-contribution marketplace for collaborative model training
/// @notice An owner escrows a reward pool; trainers stake, submit one model update per round, and are paid by the
/// contribution scores an aggregator posts. Every wei escrowed leaves by rule: the owner cannot take the pool
/// back by stalling (missed deadlines cancel the project and pay submitted work), a round can be challenged and
/// reversed by a named arbiter, and trainers flagged often enough lose part of their stake (burned). With a
/// verifier committee, a round whose result a quorum of independent verifiers recomputed and signed is final at
/// once: it cannot be challenged, and claims need not wait for its challenge window.
/// @dev The contract is its modules, each an abstract contract on {MarketBase} (storage and shared checks):
/// {MarketRounds} (projects, submissions, finalization, liveness), {MarketDisputes} (challenges),
/// {MarketPayouts} (claims), {MarketCommitteeHook} (the verifier committee) and {MarketRelay} (EIP-712 relayed
/// submissions). Types, events and errors live in {ITrainingMarket}. Payouts are pull-only and O(1) per account.
/// Burned wei (slashes, forfeited bonds) are sent to BURN_ADDRESS so that a project's escrow always drains to
/// exactly zero.
contract TrainingMarket is MarketRounds, MarketDisputes, MarketPayouts, MarketCommitteeHook, MarketRelay {
    /// @param committee_ A contract implementing {IRoundAttestor}, or address(0) for a market without a committee.
    constructor(address committee_) MarketCommitteeHook(committee_) {}
}
