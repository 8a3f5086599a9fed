// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {VerifierCommittee} from "../VerifierCommittee.sol";
import {BN254} from "../lib/BN254.sol";

/// @title VerifierProxy
/// @notice Test-only verifier that is a contract refusing plain ether, to exercise the committee's failed
///         stake transfer. Never deployed outside tests.
contract VerifierProxy {
    VerifierCommittee public immutable committee;

    constructor(VerifierCommittee committee_) {
        committee = committee_;
    }

    function register(BN254.G1Point calldata pkG1, BN254.G2Point calldata pkG2, BN254.G1Point calldata proof)
        external
        payable
    {
        committee.register{value: msg.value}(pkG1, pkG2, proof);
    }

    function requestExit() external {
        committee.requestExit();
    }

    function withdraw() external {
        committee.withdraw();
    }
}
