// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title IRoundResultSource: what a verifier committee reads from a market
/// @notice {TrainingMarket} implements it; {VerifierCommittee} attests the digest it returns.
interface IRoundResultSource {
    /// @notice The result digest stored for a finalized round (zero while the round is not finalized).
    /// @param projectId The project.
    /// @param round The round.
    /// @return digest keccak256 of the round's result, as `resultDigestOf` computes it.
    function roundResultDigest(uint256 projectId, uint16 round) external view returns (bytes32 digest);
}
