// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketRelay: a trainer's submission signed as EIP-712 typed data and relayed by anyone
/// @notice A trainer without gas signs its submission and a relayer sends it (`submitUpdateFor`); the chain
/// records it as the trainer's, with exactly the checks and effects of a direct submission.
abstract contract MarketRelay is MarketBase, EIP712, Nonces {
    /// @notice EIP-712 type of a relayed submission (`cid` is hashed as EIP-712 hashes strings).
    bytes32 public constant SUBMIT_UPDATE_TYPEHASH = keccak256(
        "SubmitUpdate(address trainer,uint256 projectId,uint16 round,string cid,bytes32 sha256,uint256 nonce,uint256 deadline)"
    );

    constructor() EIP712("trustmarket TrainingMarket", "1") {}

    /// @inheritdoc ITrainingMarket
    /// @dev The signature binds the trainer, project, round, CID, digest, the trainer's nonce (`nonces(trainer)`,
    /// consumed here, so a replay reverts) and a deadline. ERC-1271 wallets are accepted. UpdateSubmitted names
    /// the trainer, never the relayer.
    function submitUpdateFor(
        address trainer,
        uint256 projectId,
        uint16 round,
        string calldata cid,
        bytes32 sha256Digest,
        uint256 deadline,
        bytes calldata signature
    ) external nonReentrant {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        bytes32 digest = _submissionDigest(trainer, projectId, round, keccak256(bytes(cid)), sha256Digest, deadline);
        if (!SignatureChecker.isValidSignatureNow(trainer, digest, signature)) revert InvalidSignature(trainer);
        _submitUpdate(trainer, projectId, round, cid, sha256Digest);
    }

    /// @dev The EIP-712 digest of a relayed submission; consumes `trainer`'s nonce (a reverted call restores it).
    /// A function of its own, so that submitUpdateFor's many calldata arguments stay within the stack.
    function _submissionDigest(
        address trainer,
        uint256 projectId,
        uint16 round,
        bytes32 cidHash,
        bytes32 sha256Digest,
        uint256 deadline
    ) private returns (bytes32) {
        uint256 nonce = _useNonce(trainer);
        return _hashTypedDataV4(
            keccak256(
                abi.encode(SUBMIT_UPDATE_TYPEHASH, trainer, projectId, round, cidHash, sha256Digest, nonce, deadline)
            )
        );
    }
}
