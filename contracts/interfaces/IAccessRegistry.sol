// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title IAccessRegistry: events, errors and functions of the API access registry
/// @notice The implementation is {AccessRegistry}: grantors set a wallet's tier and expiry; a wallet accepts the
/// current terms by an EIP-712 signature that anyone may relay.
interface IAccessRegistry {
    /// @notice A wallet's grant: `tier` until `expiresAt` (tier 0: none).
    struct Grant {
        uint8 tier;
        uint64 expiresAt;
    }

    /// @notice A grantor set `account` to `tier` until `expiresAt`.
    /// @param account The wallet.
    /// @param tier Its tier.
    /// @param expiresAt When the grant stops counting.
    /// @param decisionRef A reference to the off-chain decision.
    /// @param grantor Who granted it.
    event TierGranted(
        address indexed account, uint8 tier, uint64 expiresAt, bytes32 indexed decisionRef, address indexed grantor
    );
    /// @notice A grantor removed `account`'s access.
    /// @param account The wallet.
    /// @param decisionRef A reference to the off-chain decision.
    /// @param grantor Who revoked it.
    event TierRevoked(address indexed account, bytes32 indexed decisionRef, address indexed grantor);
    /// @notice New terms of use are current; every wallet must accept them again.
    /// @param version Their version number.
    /// @param termsHash Their digest.
    /// @param uri Where they can be read.
    event TermsPublished(uint64 indexed version, bytes32 termsHash, string uri);
    /// @notice `account` accepted the terms `termsHash` (version `version`).
    /// @param account The wallet.
    /// @param termsHash The terms accepted.
    /// @param version Their version.
    event TermsAccepted(address indexed account, bytes32 termsHash, uint64 indexed version);

    /// @notice A tier outside 1..maxTier.
    /// @param tier The tier given.
    /// @param maxTier The highest tier.
    error InvalidTier(uint8 tier, uint8 maxTier);
    /// @notice An expiry that is not in the future.
    /// @param expiresAt The expiry given.
    /// @param nowTimestamp The block's time.
    error ExpiryNotInFuture(uint64 expiresAt, uint256 nowTimestamp);
    /// @notice The zero address cannot hold a grant or accept terms.
    error ZeroAddress();
    /// @notice Revoking a wallet that holds no grant.
    /// @param account The wallet.
    error NoGrant(address account);
    /// @notice Terms with a zero hash.
    error EmptyTerms();
    /// @notice Publishing the terms that are already current.
    /// @param termsHash The terms given.
    error TermsUnchanged(bytes32 termsHash);
    /// @notice Accepting terms other than the current ones (or before any are published).
    /// @param offered The terms offered.
    /// @param current The current terms.
    error NotCurrentTerms(bytes32 offered, bytes32 current);
    /// @notice A signed acceptance whose deadline has passed.
    /// @param deadline The signature's deadline.
    /// @param nowTimestamp The block's time.
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    /// @notice A signature that `account` did not make over this acceptance.
    /// @param account The wallet named.
    error InvalidSignature(address account);

    /// @notice Set `account`'s tier and expiry (a new grant, an upgrade, a downgrade or a renewal).
    /// @param account The wallet.
    /// @param tier 1..maxTier.
    /// @param expiresAt Unix time after which the grant no longer counts; must be in the future.
    /// @param decisionRef A reference to the off-chain decision (e.g. the hash of an application id).
    function setTier(address account, uint8 tier, uint64 expiresAt, bytes32 decisionRef) external;

    /// @notice Remove `account`'s access at once.
    /// @param account The wallet.
    /// @param decisionRef A reference to the off-chain decision.
    function revoke(address account, bytes32 decisionRef) external;

    /// @notice Publish new terms of use as the next version; earlier acceptances stop counting, even if these terms
    /// were published before under an older version.
    /// @param termsHash Digest of the terms document.
    /// @param uri Where the document can be read (a CID URI or URL); informational, emitted only.
    function publishTerms(bytes32 termsHash, string calldata uri) external;

    /// @notice Record that `account` accepted the current terms, on the strength of its EIP-712 signature.
    /// @param account The wallet accepting.
    /// @param termsHash Must equal `currentTermsHash`.
    /// @param deadline Unix time after which the signature is void.
    /// @param signature `account`'s signature over AcceptTerms(account, termsHash, nonces(account), deadline).
    function acceptTermsFor(address account, bytes32 termsHash, uint256 deadline, bytes calldata signature)
        external;

    /// @notice Everything the API needs about `account` in one call.
    /// @param account The wallet.
    /// @return tier The effective tier: 0 if never granted, revoked or expired.
    /// @return expiresAt The grant's expiry (0 if none).
    /// @return acceptedCurrentTerms Whether `account` accepted the terms that are current now.
    /// @return grantor Whether `account` holds GRANTOR_ROLE (reviews access applications).
    function accessOf(address account)
        external
        view
        returns (uint8 tier, uint64 expiresAt, bool acceptedCurrentTerms, bool grantor);

    /// @notice The terms hash `account` accepted last (zero if never).
    /// @param account The wallet.
    /// @return termsHash The terms.
    function acceptedTermsOf(address account) external view returns (bytes32 termsHash);

    /// @notice The version of the terms `account` accepted last (0 if never); it has accepted the current terms
    /// exactly when this is `termsVersion`.
    /// @param account The wallet.
    /// @return version The version.
    function acceptedVersionOf(address account) external view returns (uint64 version);

    /// @notice The EIP-712 domain separator, for off-chain signers.
    /// @return separator The separator.
    function domainSeparator() external view returns (bytes32 separator);
}
