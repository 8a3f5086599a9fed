// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title Vm: the few Foundry cheatcodes these tests use
/// @notice forge-std cannot be fetched here (no network but the package registries), so the cheatcodes are declared
/// as forge implements them at its fixed cheatcode address.
interface Vm {
    /// @notice Set block.timestamp.
    /// @param timestamp The new time.
    function warp(uint256 timestamp) external;

    /// @notice Set an account's balance.
    /// @param account The account.
    /// @param balance Its new balance, in wei.
    function deal(address account, uint256 balance) external;

    /// @notice Make the next call come from `sender`.
    /// @param sender The caller to impersonate.
    function prank(address sender) external;
}

/// @dev Where forge serves the cheatcodes: address(uint160(uint256(keccak256("hevm cheat code")))).
Vm constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
