// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title ChainClientProbe
/// @notice Test-only contract that exercises the Python chain client: custom errors, string reverts, panics,
///         events and constructor arguments. Never deployed outside tests.
contract ChainClientProbe {
    /// @notice The value may not be zero.
    /// @param caller Who tried to store it.
    /// @param code A fixed code (7), to check argument decoding.
    error ZeroValue(address caller, uint256 code);

    /// @notice Emitted on every store.
    /// @param who Who stored.
    /// @param value The value stored.
    event Stored(address indexed who, uint256 value);

    uint256 public value;

    constructor(uint256 initial) {
        value = initial;
    }

    /// @notice Store `v`; reverts with `ZeroValue` for zero.
    function store(uint256 v) external {
        if (v == 0) revert ZeroValue(msg.sender, 7);
        value = v;
        emit Stored(msg.sender, v);
    }

    /// @notice Reverts with a plain string.
    function fail() external pure {
        revert("plain failure");
    }

    /// @notice Panics (division by zero).
    function divide(uint256 d) external view returns (uint256) {
        return value / d;
    }
}
