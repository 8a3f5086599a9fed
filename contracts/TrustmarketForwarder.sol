// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

/// @title TrustmarketForwarder: OpenZeppelin's ERC-2771 forwarder for gasless calls of the trustmarket contracts
/// @notice A trainer signs an EIP-712 ForwardRequest (from, to, value, gas, nonce, deadline, data) and anyone
/// relays it (`execute`, or `executeBatch` with a refund receiver, which skips a request that ran already, e.g.
/// after a front-run, instead of reverting); a contract that trusts this forwarder (TrainingMarket) sees the signer
/// as the caller. One addition to OpenZeppelin's: `invalidateNonce`, so a signer can void a request it handed out.
contract TrustmarketForwarder is ERC2771Forwarder {
    /// @notice `signer` consumed its nonce `nonce` without a request: a request signed with it is void.
    /// @param signer The account.
    /// @param nonce The nonce consumed.
    event NonceInvalidated(address indexed signer, uint256 nonce);

    /// @param name The EIP-712 domain name ("trustmarket Forwarder"); the version is "1".
    constructor(string memory name) ERC2771Forwarder(name) {}

    /// @notice Void the caller's pending signed request by consuming its current nonce.
    /// @return nonce The nonce consumed.
    function invalidateNonce() external returns (uint256 nonce) {
        nonce = _useNonce(msg.sender);
        emit NonceInvalidated(msg.sender, nonce);
    }
}
