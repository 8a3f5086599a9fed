// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketRelay: calls relayed by a trusted ERC-2771 forwarder act for their signer
/// @notice A trainer without gas signs a request for any call of this market (a commitment, a reveal, a claim) and a
/// relayer sends it through {TrustmarketForwarder}; the market runs the call as the trainer's own. This module is
/// OpenZeppelin's ERC2771Context: `_msgSender()`, which every module acts for, is the signer when the trusted
/// forwarder calls, and the caller otherwise. The forwarder (nonces, deadlines, signatures, ERC-1271) is trusted
/// like the code; zero means no relaying.
abstract contract MarketRelay is MarketBase, ERC2771Context {
    /// @param forwarder_ The trusted forwarder, or address(0) for a market without relayed calls.
    constructor(address forwarder_) ERC2771Context(forwarder_) {}

    /// @dev ERC2771Context's: the signer of a forwarded call, else the caller.
    function _msgSender() internal view virtual override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    /// @dev ERC2771Context's: the calldata without the forwarder's appended signer.
    function _msgData() internal view virtual override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    /// @dev ERC2771Context's: 20 bytes (the appended signer).
    function _contextSuffixLength() internal view virtual override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}
