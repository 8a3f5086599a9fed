// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {IAccessRegistry} from "./interfaces/IAccessRegistry.sol";

/// @title AccessRegistry: who may use trustmarket's API, at which tier, until when, under which terms.
/// @notice Grantors (an AccessControl role) set a wallet's tier and expiry; a wallet accepts the current terms
/// by an EIP-712 signature that anyone may relay, so acceptance costs the user no gas. The API reads
/// `accessOf` and caches it briefly: a revocation here takes effect there within the cache's TTL.
/// @dev Tier 0 means "no access". Tiers are small integers whose meaning (scopes, quotas) lives in the API's
/// settings; the contract only bounds them by `maxTier`.
contract AccessRegistry is IAccessRegistry, AccessControl, EIP712, Nonces {
    /// @notice The role that may grant, change and revoke tiers.
    bytes32 public constant GRANTOR_ROLE = keccak256("GRANTOR_ROLE");
    /// @notice The role that may publish new terms of use.
    bytes32 public constant TERMS_ADMIN_ROLE = keccak256("TERMS_ADMIN_ROLE");

    /// @notice EIP-712 type of a terms acceptance.
    bytes32 public constant ACCEPT_TERMS_TYPEHASH =
        keccak256("AcceptTerms(address account,bytes32 termsHash,uint256 nonce,uint256 deadline)");

    /// @notice The highest tier a grantor may set.
    uint8 public immutable maxTier;

    /// @notice sha256/keccak digest of the current terms document (zero until terms are published).
    bytes32 public currentTermsHash;
    /// @notice Version number of the current terms, starting at 1 with the first publication.
    uint64 public termsVersion;

    /// @notice The hash of each published version of the terms (version 1 is the first publication).
    mapping(uint64 version => bytes32 termsHash) public termsOf;

    mapping(address account => Grant) private _grants;
    /// @dev An acceptance is of a version, not of a hash: republishing old terms makes a new version, and old
    /// acceptances never revive.
    mapping(address account => uint64 version) private _acceptedVersion;

    /// @param admin Holds DEFAULT_ADMIN_ROLE, GRANTOR_ROLE and TERMS_ADMIN_ROLE at deployment.
    /// @param maxTier_ The highest tier (at least 1).
    constructor(address admin, uint8 maxTier_) EIP712("trustmarket AccessRegistry", "1") {
        if (admin == address(0)) revert ZeroAddress();
        if (maxTier_ == 0) revert InvalidTier(maxTier_, maxTier_);
        maxTier = maxTier_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GRANTOR_ROLE, admin);
        _grantRole(TERMS_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IAccessRegistry
    function setTier(address account, uint8 tier, uint64 expiresAt, bytes32 decisionRef)
        external
        onlyRole(GRANTOR_ROLE)
    {
        if (account == address(0)) revert ZeroAddress();
        if (tier == 0 || tier > maxTier) revert InvalidTier(tier, maxTier);
        if (expiresAt <= block.timestamp) revert ExpiryNotInFuture(expiresAt, block.timestamp);
        _grants[account] = Grant({tier: tier, expiresAt: expiresAt});
        emit TierGranted(account, tier, expiresAt, decisionRef, msg.sender);
    }

    /// @inheritdoc IAccessRegistry
    function revoke(address account, bytes32 decisionRef) external onlyRole(GRANTOR_ROLE) {
        if (_grants[account].tier == 0) revert NoGrant(account);
        delete _grants[account];
        emit TierRevoked(account, decisionRef, msg.sender);
    }

    /// @inheritdoc IAccessRegistry
    function publishTerms(bytes32 termsHash, string calldata uri) external onlyRole(TERMS_ADMIN_ROLE) {
        if (termsHash == bytes32(0)) revert EmptyTerms();
        if (termsHash == currentTermsHash) revert TermsUnchanged(termsHash);
        currentTermsHash = termsHash;
        uint64 version = ++termsVersion;
        termsOf[version] = termsHash;
        emit TermsPublished(version, termsHash, uri);
    }

    /// @inheritdoc IAccessRegistry
    /// @dev Anyone may relay; the signature binds the account, the terms, a per-account nonce and a deadline,
    /// so it cannot be replayed or reused for other terms. ERC-1271 wallets are accepted too.
    function acceptTermsFor(address account, bytes32 termsHash, uint256 deadline, bytes calldata signature)
        external
    {
        if (account == address(0)) revert ZeroAddress();
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        bytes32 current = currentTermsHash;
        if (current == bytes32(0) || termsHash != current) revert NotCurrentTerms(termsHash, current);
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(ACCEPT_TERMS_TYPEHASH, account, termsHash, _useNonce(account), deadline)));
        if (!SignatureChecker.isValidSignatureNow(account, digest, signature)) revert InvalidSignature(account);
        uint64 version = termsVersion;
        _acceptedVersion[account] = version;
        emit TermsAccepted(account, termsHash, version);
    }

    /// @inheritdoc IAccessRegistry
    function accessOf(address account)
        external
        view
        returns (uint8 tier, uint64 expiresAt, bool acceptedCurrentTerms, bool grantor)
    {
        Grant memory grant = _grants[account];
        expiresAt = grant.expiresAt;
        tier = expiresAt > block.timestamp ? grant.tier : 0;
        uint64 version = termsVersion;
        acceptedCurrentTerms = version != 0 && _acceptedVersion[account] == version;
        grantor = hasRole(GRANTOR_ROLE, account);
    }

    /// @inheritdoc IAccessRegistry
    function acceptedTermsOf(address account) external view returns (bytes32) {
        return termsOf[_acceptedVersion[account]];
    }

    /// @inheritdoc IAccessRegistry
    function acceptedVersionOf(address account) external view returns (uint64) {
        return _acceptedVersion[account];
    }

    /// @inheritdoc IAccessRegistry
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
