// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {IRoundAttestor} from "../interfaces/IRoundAttestor.sol";

/// @title TestRoundMarket
/// @notice Test-only stand-in for TrainingMarket's round results: stores the result digest of a round, computed
///         the way TrainingMarket computes it, and exposes `roundResultDigest` for VerifierCommittee. Never
///         deployed outside tests.
contract TestRoundMarket {
    /// @notice A round's result was stored (or replaced).
    event RoundFinalized(uint256 indexed projectId, uint16 indexed round, bytes32 resultDigest);

    /// @notice The stored result digest of a round; zero until it is finalized.
    mapping(uint256 projectId => mapping(uint16 round => bytes32)) public roundResultDigest;

    /// @notice Store a round result; the digest binds the chain, this contract, the round and its outputs.
    function finalizeRound(
        uint256 projectId,
        uint16 round,
        bytes32 modelSha256,
        address[] calldata trainers,
        uint64[] calldata scores,
        address[] calldata flagged,
        bytes32 reportSha256
    ) external returns (bytes32 digest) {
        digest = keccak256(
            abi.encode(
                block.chainid,
                address(this),
                projectId,
                round,
                modelSha256,
                keccak256(abi.encode(trainers, scores, flagged)),
                reportSha256
            )
        );
        roundResultDigest[projectId][round] = digest;
        emit RoundFinalized(projectId, round, digest);
    }

    /// @notice Rule that the round's stored result was overturned: the committee slashes its attesters (this
    /// contract must hold the committee's MARKET_ROLE).
    /// @param committee The committee.
    /// @param projectId The project.
    /// @param round The round.
    /// @return burned The wei the committee burned.
    function overturn(IRoundAttestor committee, uint256 projectId, uint16 round) external returns (uint256 burned) {
        return committee.slashAttesters(projectId, round);
    }

    /// @notice Store an arbitrary digest (zero clears the round): for replaced results in tests.
    function setRoundResultDigest(uint256 projectId, uint16 round, bytes32 digest) external {
        roundResultDigest[projectId][round] = digest;
        emit RoundFinalized(projectId, round, digest);
    }
}
