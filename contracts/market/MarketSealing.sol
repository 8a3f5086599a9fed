// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ITrainingMarket} from "../interfaces/ITrainingMarket.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title MarketSealing: sealed submissions (commit, then reveal) and sealed validation shards
/// @notice While a round takes commits, a trainer publishes only a commitment to its update; nothing that
/// identifies the update is public, so nobody can copy it. Once commits close, the trainer reveals the update's
/// CID, sha256 and salt, and the round's validation shard, committed at creation as one leaf of the project's
/// validation root, is revealed too: trainers never see a round's yardstick before they submit to it, and anyone
/// can recompute the round afterwards. An unrevealed commitment scores nothing and counts as a missed round.
abstract contract MarketSealing is MarketBase {
    /// @inheritdoc ITrainingMarket
    /// @dev Once per round, by a registered trainer, within the commit window. The commitment binds the chain,
    /// this market, the project, the round, the trainer, the update's sha256 and a secret salt (`_commitmentOf`).
    function commitUpdate(uint256 projectId, uint16 round, bytes32 commitment) external nonReentrant {
        Project storage p = _openRound(projectId, round);
        (uint64 commitEnd,,) = _schedule(p);
        if (block.timestamp > commitEnd) revert CommitWindowClosed(projectId, round, commitEnd);
        if (uint256(commitment) < SEALED_FLOOR) revert InvalidCommitment(commitment);
        address trainer = _msgSender();
        if (!_trainers[projectId][trainer].registered) revert NotRegistered(projectId, trainer);
        mapping(address => uint256) storage entries = _entries[projectId][round];
        if (entries[trainer] != 0) revert AlreadyCommitted(projectId, round, trainer);
        entries[trainer] = uint256(commitment);
        p.roundCommits += 1;
        emit UpdateCommitted(projectId, round, trainer, commitment);
    }

    /// @inheritdoc ITrainingMarket
    /// @dev After the commit window and within the reveal window. The CID is not part of the commitment (it
    /// depends on how the bytes are stored, not on what they are); the sha256 is, and every reader checks the
    /// bytes against it.
    function revealUpdate(uint256 projectId, uint16 round, string calldata cid, bytes32 sha256Digest, bytes32 salt)
        external
        nonReentrant
    {
        Project storage p = _openRound(projectId, round);
        (uint64 commitEnd, uint64 revealEnd,) = _schedule(p);
        if (block.timestamp <= commitEnd || block.timestamp > revealEnd) {
            revert NotRevealWindow(projectId, round, commitEnd + 1, revealEnd);
        }
        _checkContent(cid, sha256Digest);
        address trainer = _msgSender();
        mapping(address => uint256) storage entries = _entries[projectId][round];
        uint256 entry = entries[trainer];
        if (entry < SEALED_FLOOR) revert NothingToReveal(projectId, round, trainer);
        if (bytes32(entry) != _commitmentOf(projectId, round, trainer, sha256Digest, salt)) {
            revert CommitmentMismatch(projectId, round, trainer);
        }
        entries[trainer] = REVEALED;
        p.roundReveals += 1;
        p.roundRevealedStake += _trainers[projectId][trainer].stake;
        emit UpdateRevealed(projectId, round, trainer, cid, sha256Digest);
    }

    /// @inheritdoc ITrainingMarket
    /// @dev Anyone may reveal (the owner, or an aggregator it gave the shard): the proof, not the sender, makes it
    /// the round's shard. Leaves are keccak256(bytes.concat(keccak256(abi.encode(round, sha256)))), as
    /// OpenZeppelin's StandardMerkleTree builds them, so a shard cannot stand in for another round's.
    function revealValidation(
        uint256 projectId,
        uint16 round,
        string calldata cid,
        bytes32 sha256Digest,
        bytes32[] calldata proof
    ) external nonReentrant {
        Project storage p = _openRound(projectId, round);
        (uint64 commitEnd,,) = _schedule(p);
        if (block.timestamp <= commitEnd) revert CommitsStillOpen(projectId, round, commitEnd);
        _checkContent(cid, sha256Digest);
        Round storage rd = _rounds[projectId][round];
        if (rd.validationSha256 != 0) revert ValidationAlreadyRevealed(projectId, round);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(round, sha256Digest))));
        if (!MerkleProof.verifyCalldata(proof, p.validationRoot, leaf)) revert InvalidValidationProof(projectId, round);
        rd.validationSha256 = sha256Digest;
        emit ValidationRevealed(projectId, round, cid, sha256Digest);
    }

    /// @dev keccak256(abi.encode(block.chainid, address(this), projectId, round, trainer, updateSha256, salt)):
    /// what a trainer commits to (`backend.chain.market_rules.update_commitment` computes it off chain).
    function _commitmentOf(uint256 projectId, uint16 round, address trainer, bytes32 updateSha256, bytes32 salt)
        private
        view
        returns (bytes32 commitment)
    {
        return keccak256(abi.encode(block.chainid, address(this), projectId, round, trainer, updateSha256, salt));
    }
}
