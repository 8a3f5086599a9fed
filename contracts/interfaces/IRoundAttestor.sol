// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title IRoundAttestor: what TrainingMarket needs from a verifier committee
/// @notice {VerifierCommittee} implements it: `isAttested` says whether a quorum of the committee signed the result
/// digest the market stores for a round now; `pinSnapshot` fixes which committee epoch may attest it (idempotent);
/// `slashAttesters` punishes the members who attested a result a challenge overturned; `exitDelay` is how long a
/// leaving member stays slashable.
interface IRoundAttestor {
    /// @notice Whether a quorum signed the result digest `market` stores now for (`projectId`, `round`).
    /// @param market The market that finalized the round.
    /// @param projectId The project.
    /// @param round The round.
    /// @return attested True once a quorum of the round's snapshot signed the current digest.
    function isAttested(address market, uint256 projectId, uint16 round) external view returns (bool attested);

    /// @notice Fix the committee epoch that may attest the round's current result (a no-op once pinned).
    /// @param market The market that finalized the round.
    /// @param projectId The project.
    /// @param round The round.
    /// @return epoch The pinned epoch.
    function pinSnapshot(address market, uint256 projectId, uint16 round) external returns (uint64 epoch);

    /// @notice The calling market's ruling: the result it stores for (`projectId`, `round`) was overturned, so
    /// every member who attested it loses its stake. Only a market the committee trusts may call it.
    /// @param projectId The project.
    /// @param round The round.
    /// @return slashed The wei burned.
    function slashAttesters(uint256 projectId, uint16 round) external returns (uint256 slashed);

    /// @notice Seconds between a member's exit request and its withdrawal: how long it stays slashable.
    /// @return delay The exit delay.
    function exitDelay() external view returns (uint64 delay);
}
