// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {TrainingMarket} from "../TrainingMarket.sol";

/// @title MaliciousTrainer (test only): a trainer contract that attacks TrainingMarket when it is paid
/// @notice Mode.ReenterClaim: on receiving ETH, calls `claim` again (and swallows the failure, so the test can
/// see whether the re-entry was refused while the outer claim goes on). Mode.ReenterCancel: re-enters another
/// function (`cancel`). Mode.Reject: refuses ETH, to show that one bad receiver cannot block the others' claims.
contract MaliciousTrainer {
    enum Mode {
        ReenterClaim,
        ReenterCancel,
        Reject
    }

    TrainingMarket public immutable market;
    uint256 public immutable projectId;
    Mode public mode;
    uint256 public payments;
    bool public reentrySucceeded;
    bytes public reentryError;

    /// @notice Raised in Mode.Reject on any incoming ETH.
    error Rejected();

    constructor(TrainingMarket market_, uint256 projectId_) {
        market = market_;
        projectId = projectId_;
    }

    /// @notice Choose how to react to incoming ETH.
    function setMode(Mode mode_) external {
        mode = mode_;
    }

    /// @notice Register with msg.value as stake.
    function register() external payable {
        market.register{value: msg.value}(projectId);
    }

    /// @notice Commit to an update for `round`.
    function commit(uint16 round, bytes32 commitment) external {
        market.commitUpdate(projectId, round, commitment);
    }

    /// @notice Reveal the update committed to for `round`.
    function reveal(uint16 round, string calldata cid, bytes32 digest, bytes32 salt) external {
        market.revealUpdate(projectId, round, cid, digest, salt);
    }

    /// @notice Claim this contract's payout.
    function claim() external {
        market.claim(projectId);
    }

    receive() external payable {
        if (mode == Mode.Reject) revert Rejected();
        payments += 1;
        if (mode == Mode.ReenterClaim) {
            try market.claim(projectId) {
                reentrySucceeded = true;
            } catch (bytes memory err) {
                reentryError = err;
            }
        } else {
            try market.cancel(projectId) {
                reentrySucceeded = true;
            } catch (bytes memory err) {
                reentryError = err;
            }
        }
    }
}
