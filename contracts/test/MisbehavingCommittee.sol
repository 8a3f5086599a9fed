// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title MisbehavingCommittee
/// @notice Test-only stand-in for a broken verifier committee: `pinSnapshot`, `slashAttesters` and `isAttested`
///         revert, burn all the gas they are given, or answer malformed data, so TrainingMarket's tests can show
///         that such a committee never blocks finalization, rulings or claims. Never deployed outside tests.
contract MisbehavingCommittee {
    /// @notice How the calls misbehave.
    enum Mode {
        Revert,
        BurnGas,
        ShortAnswer,
        NotABool
    }

    /// @notice The current misbehaviour.
    Mode public mode;

    /// @notice Always raised in Mode.Revert.
    error Broken();

    /// @notice Choose the misbehaviour.
    function setMode(Mode mode_) external {
        mode = mode_;
    }

    /// @notice Misbehaves as set; never pins anything.
    function pinSnapshot(address, uint256, uint16) external view returns (uint64 /* epoch */) {
        _misbehave();
    }

    /// @notice Misbehaves as set; never slashes anyone.
    function slashAttesters(uint256, uint16) external view returns (uint256 /* burned */) {
        _misbehave();
    }

    /// @notice A long exit delay, answered properly: the market then accepts projects with challenges, and the
    /// other calls show what a broken committee does to them.
    function exitDelay() external pure returns (uint64) {
        return 365 days;
    }

    /// @notice Misbehaves as set; never answers a well-formed bool.
    function isAttested(address, uint256, uint16) external view returns (bool /* attested */) {
        _misbehave();
    }

    function _misbehave() private view {
        Mode m = mode;
        if (m == Mode.Revert) revert Broken();
        if (m == Mode.BurnGas) {
            // Spin until the gas runs out.
            while (true) {}
        }
        assembly {
            switch m
            // 31 bytes: too short to be a bool.
            case 2 { mstore(0, 1) return(1, 31) }
            // A word that is neither 0 nor 1.
            default { mstore(0, 2) return(0, 32) }
        }
    }
}
