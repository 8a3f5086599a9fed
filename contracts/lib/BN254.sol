// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title BN254
/// @notice G1 arithmetic, hash-to-G1 and BLS pairing checks on BN254 (alt_bn128) through the EVM precompiles
///         ecAdd (0x06), ecMul (0x07), ecPairing (0x08) and modexp (0x05), as specified in EIP-196/197/198.
/// @dev Signatures and message points live in G1, public keys in G2 (imaginary part first, as EIP-197 encodes
///      them). `hashToG1` is the try-and-increment map of `aggregator/bls.py::hash_to_g1`; the two must agree
///      bit for bit (tests/fixtures/bls_vectors.json). `verifyWithG1Key` is the EigenLayer-style check that
///      binds a caller-supplied G2 aggregate key to the G1 keys the contract added itself.
library BN254 {
    /// @notice The base field modulus p.
    uint256 internal constant P = 21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// @notice The group order r.
    uint256 internal constant R = 21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// @dev 2^256 mod p: folds the high half of a 512-bit hash into the field.
    uint256 private constant TWO_256_MOD_P = 0x0e0a77c19a07df2f666ea36f7879462c0a78eb28f5c70b3dd35d438dc58f0d9d;
    /// @dev (p + 1) / 4: p = 3 (mod 4), so a^((p+1)/4) is a square root of a whenever one exists.
    uint256 private constant SQRT_EXPONENT = 0x0c19139cb84c680a6e14116da060561765e05aa45a1c72a34f082305b61f3f52;

    // The G2 generator of EIP-197, and the negation of its y coordinate (for e(a, -g2) * e(b, Q) == 1).
    uint256 private constant G2_X_IM = 11559732032986387107991004021392285783925812861821192530917403151452391805634;
    uint256 private constant G2_X_RE = 10857046999023057135944570762232829481370756359578518086990519993285655852781;
    uint256 private constant G2_NEG_Y_IM =
        P - 4082367875863433681332203403145435568316851327593401208105741076214120093531;
    uint256 private constant G2_NEG_Y_RE =
        P - 8495653923123431417604973247489272438418190587263600148770280649306958101930;

    /// @notice An affine G1 point; (0, 0) is the point at infinity.
    struct G1Point {
        uint256 x;
        uint256 y;
    }

    /// @notice An affine G2 point in EIP-197 order: imaginary part before real part.
    struct G2Point {
        uint256 xIm;
        uint256 xRe;
        uint256 yIm;
        uint256 yRe;
    }

    /// @notice A precompile rejected its input: a coordinate outside the field, a point off the curve, or a G2
    ///         point outside the order-r subgroup.
    error InvalidPoint();
    /// @notice 256 hash-to-curve attempts failed (probability 2^-256; never expected).
    error HashToCurveFailed();

    /// @notice The G1 generator (1, 2).
    function generatorG1() internal pure returns (G1Point memory) {
        return G1Point(1, 2);
    }

    /// @notice True for the point at infinity.
    function isInfinity(G1Point memory a) internal pure returns (bool) {
        return a.x == 0 && a.y == 0;
    }

    /// @notice True for the G2 point at infinity (all coordinates zero).
    function isInfinity(G2Point memory a) internal pure returns (bool) {
        return a.xIm == 0 && a.xRe == 0 && a.yIm == 0 && a.yRe == 0;
    }

    /// @notice a + b in G1 (ecAdd); reverts with `InvalidPoint` if either is not a curve point.
    function add(G1Point memory a, G1Point memory b) internal view returns (G1Point memory sum) {
        bool ok;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            mstore(buf, mload(a))
            mstore(add(buf, 0x20), mload(add(a, 0x20)))
            mstore(add(buf, 0x40), mload(b))
            mstore(add(buf, 0x60), mload(add(b, 0x20)))
            ok := staticcall(gas(), 0x06, buf, 0x80, sum, 0x40)
        }
        if (!ok) revert InvalidPoint();
    }

    /// @notice s * a in G1 (ecMul); reverts with `InvalidPoint` if `a` is not a curve point.
    function mul(G1Point memory a, uint256 s) internal view returns (G1Point memory product) {
        bool ok;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            mstore(buf, mload(a))
            mstore(add(buf, 0x20), mload(add(a, 0x20)))
            mstore(add(buf, 0x40), s)
            ok := staticcall(gas(), 0x07, buf, 0x60, product, 0x40)
        }
        if (!ok) revert InvalidPoint();
    }

    /// @notice e(a1, b1) * e(a2, b2) == 1 (ecPairing); reverts with `InvalidPoint` on malformed input.
    function pairing2(G1Point memory a1, G2Point memory b1, G1Point memory a2, G2Point memory b2)
        internal
        view
        returns (bool)
    {
        uint256[12] memory input =
            [a1.x, a1.y, b1.xIm, b1.xRe, b1.yIm, b1.yRe, a2.x, a2.y, b2.xIm, b2.xRe, b2.yIm, b2.yRe];
        uint256[1] memory out;
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x08, input, 0x180, out, 0x20)
        }
        if (!ok) revert InvalidPoint();
        return out[0] == 1;
    }

    /// @notice Maps `message` onto G1 under the domain `tag` (= sha256 of the domain string).
    /// @dev m = sha256(message); for ctr = 0, 1, ...: x = (sha256(tag|m|ctr|0) * 2^256 + sha256(tag|m|ctr|1))
    ///      mod p; the first x with x^3 + 3 a square gives (x, y), y the even root. G1 has cofactor 1, so the
    ///      point is in the group. Not constant time: messages are public. About two attempts on average.
    function hashToG1(bytes32 tag, bytes memory message) internal view returns (G1Point memory) {
        bytes32 m = sha256(message);
        for (uint256 ctr; ctr < 256; ++ctr) {
            uint256 high = uint256(sha256(abi.encodePacked(tag, m, uint8(ctr), uint8(0))));
            uint256 low = uint256(sha256(abi.encodePacked(tag, m, uint8(ctr), uint8(1))));
            uint256 x = addmod(mulmod(high, TWO_256_MOD_P, P), low, P);
            uint256 rhs = addmod(mulmod(mulmod(x, x, P), x, P), 3, P);
            uint256 y = _modexp(rhs, SQRT_EXPONENT);
            if (mulmod(y, y, P) == rhs) {
                return G1Point(x, y & 1 == 1 ? P - y : y);
            }
        }
        revert HashToCurveFailed();
    }

    /// @notice The Fiat-Shamir weight gamma = sha256(abi.encode(h, sigma, apkG1, apkG2)) mod r.
    function challenge(G1Point memory h, G1Point memory sigma, G1Point memory apkG1, G2Point memory apkG2)
        internal
        pure
        returns (uint256)
    {
        return uint256(
            sha256(abi.encode(h.x, h.y, sigma.x, sigma.y, apkG1.x, apkG1.y, apkG2.xIm, apkG2.xRe, apkG2.yIm, apkG2.yRe))
        ) % R;
    }

    /// @notice One pairing call that accepts iff sigma is a BLS signature of the message point `h` under the
    ///         key whose G1 form is `apkG1` and G2 form is `apkG2`:
    ///         e(sigma + gamma*apkG1, -g2) * e(h + gamma*g1, apkG2) == 1, gamma from `challenge`.
    /// @dev Honest input: both sides equal e(h + gamma*g1, g2)^sk. A random gamma makes the two checks
    ///      e(sigma, g2) = e(h, apkG2) and e(apkG1, g2) = e(g1, apkG2) hold together except with probability
    ///      ~1/r, so the G2 sum supplied by a caller is bound to the G1 keys the contract added.
    function verifyWithG1Key(G1Point memory h, G1Point memory sigma, G1Point memory apkG1, G2Point memory apkG2)
        internal
        view
        returns (bool)
    {
        uint256 gamma = challenge(h, sigma, apkG1, apkG2);
        G1Point memory left = add(sigma, mul(apkG1, gamma));
        G1Point memory right = add(h, mul(generatorG1(), gamma));
        return pairing2(left, G2Point(G2_X_IM, G2_X_RE, G2_NEG_Y_IM, G2_NEG_Y_RE), right, apkG2);
    }

    /// @dev base^exponent mod p through the modexp precompile (EIP-198).
    function _modexp(uint256 base, uint256 exponent) private view returns (uint256 result) {
        bool ok;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            mstore(buf, 0x20)
            mstore(add(buf, 0x20), 0x20)
            mstore(add(buf, 0x40), 0x20)
            mstore(add(buf, 0x60), base)
            mstore(add(buf, 0x80), exponent)
            mstore(add(buf, 0xa0), P)
            ok := staticcall(gas(), 0x05, buf, 0xc0, buf, 0x20)
            result := mload(buf)
        }
        if (!ok) revert InvalidPoint();
    }
}
