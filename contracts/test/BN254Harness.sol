// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {BN254} from "../lib/BN254.sol";

/// @title BN254Harness
/// @notice Test-only window onto the BN254 library, so Python can compare hash-to-G1, point arithmetic, the
///         Fiat-Shamir weight and the pairing check with `aggregator/bls.py`. Never deployed outside tests.
contract BN254Harness {
    function hashToG1(bytes32 tag, bytes calldata message) external view returns (BN254.G1Point memory) {
        return BN254.hashToG1(tag, message);
    }

    function add(BN254.G1Point calldata a, BN254.G1Point calldata b) external view returns (BN254.G1Point memory) {
        return BN254.add(a, b);
    }

    function mul(BN254.G1Point calldata a, uint256 s) external view returns (BN254.G1Point memory) {
        return BN254.mul(a, s);
    }

    /// @notice The sum of `points` (an aggregated key or signature), starting from the point at infinity.
    function sum(BN254.G1Point[] calldata points) external view returns (BN254.G1Point memory total) {
        for (uint256 i; i < points.length; ++i) {
            total = BN254.add(total, points[i]);
        }
    }

    /// @notice A BLS signature computed on chain: secret * hashToG1(tag, message). Test keys only.
    function sign(uint256 secret, bytes32 tag, bytes calldata message) external view returns (BN254.G1Point memory) {
        return BN254.mul(BN254.hashToG1(tag, message), secret);
    }

    function challenge(
        BN254.G1Point calldata h,
        BN254.G1Point calldata sigma,
        BN254.G1Point calldata apkG1,
        BN254.G2Point calldata apkG2
    ) external pure returns (uint256) {
        return BN254.challenge(h, sigma, apkG1, apkG2);
    }

    function verifyWithG1Key(
        BN254.G1Point calldata h,
        BN254.G1Point calldata sigma,
        BN254.G1Point calldata apkG1,
        BN254.G2Point calldata apkG2
    ) external view returns (bool) {
        return BN254.verifyWithG1Key(h, sigma, apkG1, apkG2);
    }
}
