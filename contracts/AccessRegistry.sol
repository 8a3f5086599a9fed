// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title AccessRegistry: who may use trustmarket's API, at which tier, until when, under which terms.
/// @notice Grantors (an AccessControl role) set a wallet's tier and expiry; a wallet accepts the current terms
/// by an EIP-712 signature that anyone may relay, so acceptance costs the user no gas. The API reads
/// `accessOf` and caches it briefly: a revocation here takes effect there within the cache's TTL.
/// @dev Tier 0 means "no access". Tiers are small integers whose meaning (scopes, quotas) lives in the API's
/// settings; the contract only bounds them by `maxTier`.
contract AccessRegistry is AccessControl, EIP712, Nonces {
    /// @notice The role that may grant, change and revoke tiers.
    bytes32 public constant GRANTOR_ROLE = keccak256("GRANTOR_ROLE");
    /// @notice The role that may publish new terms of use.
    bytes32 public constant TERMS_ADMIN_ROLE = keccak256("TERMS_ADMIN_ROLE");

    /// @notice EIP-712 type of a terms acceptance.
    bytes32 public constant ACCEPT_TERMS_TYPEHASH =
        keccak256("AcceptTerms(address account,bytes32 termsHash,uint256 nonce,uint256 deadline)");

    struct Grant {
        uint8 tier;
        uint64 expiresAt;
    }

    /// @notice The highest tier a grantor may set.
    uint8 public immutable maxTier;

    /// @notice sha256/keccak digest of the current terms document (zero until terms are published).
    bytes32 public currentTermsHash;
    /// @notice Version number of the current terms, starting at 1 with the first publication.
    uint64 public termsVersion;

    mapping(address account => Grant) private _grants;
    mapping(address account => bytes32 termsHash) private _acceptedTerms;

    /// @notice A tier outside 1..maxTier.
    error InvalidTier(uint8 tier, uint8 maxTier);
    /// @notice An expiry that is not in the future.
    error ExpiryNotInFuture(uint64 expiresAt, uint256 nowTimestamp);
    /// @notice The zero address cannot hold a grant or accept terms.
    error ZeroAddress();
    /// @notice Revoking a wallet that holds no grant.
    error NoGrant(address account);
    /// @notice Terms with a zero hash.
    error EmptyTerms();
    /// @notice Publishing the terms that are already current.
    error TermsUnchanged(bytes32 termsHash);
    /// @notice Accepting terms other than the current ones (or before any are published).
    error NotCurrentTerms(bytes32 offered, bytes32 current);
    /// @notice A signed acceptance whose deadline has passed.
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    /// @notice A signature that `account` did not make over this acceptance.
    error InvalidSignature(address account);

    /// @notice A grantor set `account` to `tier` until `expiresAt`; `decisionRef` points at the off-chain decision.
    event TierGranted(
        address indexed account, uint8 tier, uint64 expiresAt, bytes32 indexed decisionRef, address indexed grantor
    );
    /// @notice A grantor removed `account`'s access.
    event TierRevoked(address indexed account, bytes32 indexed decisionRef, address indexed grantor);
    /// @notice New terms of use are current; every wallet must accept them again.
    event TermsPublished(uint64 indexed version, bytes32 termsHash, string uri);
    /// @notice `account` accepted the terms `termsHash` (version `version`).
    event TermsAccepted(address indexed account, bytes32 termsHash, uint64 indexed version);

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

    /// @notice Set `account`'s tier and expiry (a new grant, an upgrade, a downgrade or a renewal).
    /// @param account The wallet.
    /// @param tier 1..maxTier.
    /// @param expiresAt Unix time after which the grant no longer counts; must be in the future.
    /// @param decisionRef A reference to the off-chain decision (e.g. the hash of an application id).
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

    /// @notice Remove `account`'s access at once.
    /// @param account The wallet.
    /// @param decisionRef A reference to the off-chain decision.
    function revoke(address account, bytes32 decisionRef) external onlyRole(GRANTOR_ROLE) {
        if (_grants[account].tier == 0) revert NoGrant(account);
        delete _grants[account];
        emit TierRevoked(account, decisionRef, msg.sender);
    }

    /// @notice Publish new terms of use; earlier acceptances stop counting.
    /// @param termsHash Digest of the terms document.
    /// @param uri Where the document can be read (a CID URI or URL); informational, emitted only.
    function publishTerms(bytes32 termsHash, string calldata uri) external onlyRole(TERMS_ADMIN_ROLE) {
        if (termsHash == bytes32(0)) revert EmptyTerms();
        if (termsHash == currentTermsHash) revert TermsUnchanged(termsHash);
        currentTermsHash = termsHash;
        uint64 version = ++termsVersion;
        emit TermsPublished(version, termsHash, uri);
    }

    /// @notice Record that `account` accepted the current terms, on the strength of its EIP-712 signature.
    /// @dev Anyone may relay; the signature binds the account, the terms, a per-account nonce and a deadline,
    /// so it cannot be replayed or reused for other terms. ERC-1271 wallets are accepted too.
    /// @param account The wallet accepting.
    /// @param termsHash Must equal `currentTermsHash`.
    /// @param deadline Unix time after which the signature is void.
    /// @param signature `account`'s signature over AcceptTerms(account, termsHash, nonces(account), deadline).
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
        _acceptedTerms[account] = termsHash;
        emit TermsAccepted(account, termsHash, termsVersion);
    }

    /// @notice Everything the API needs about `account` in one call.
    /// @return tier The effective tier: 0 if never granted, revoked or expired.
    /// @return expiresAt The grant's expiry (0 if none).
    /// @return acceptedCurrentTerms Whether `account` accepted the terms that are current now.
    /// @return grantor Whether `account` holds GRANTOR_ROLE (reviews access applications).
    function accessOf(address account)
        external
        view
        returns (uint8 tier, uint64 expiresAt, bool acceptedCurrentTerms, bool grantor)
    {
        Grant memory grant = _grants[account];
        expiresAt = grant.expiresAt;
        tier = expiresAt > block.timestamp ? grant.tier : 0;
        bytes32 current = currentTermsHash;
        acceptedCurrentTerms = current != bytes32(0) && _acceptedTerms[account] == current;
        grantor = hasRole(GRANTOR_ROLE, account);
    }

    /// @notice The terms hash `account` accepted last (zero if never).
    function acceptedTermsOf(address account) external view returns (bytes32) {
        return _acceptedTerms[account];
    }

    /// @notice The EIP-712 domain separator, for off-chain signers.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
