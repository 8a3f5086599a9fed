// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {BN254} from "./BN254.sol";

/// @title CommitteeTable
/// @notice The in-memory layout of one committee epoch, as VerifierCommittee keeps it in a CodeStore blob:
///         the sum of all members' G1 keys (HEADER_BYTES), then one ENTRY_BYTES entry per member, in bitmap
///         order: pkG1.x | pkG1.y | address (20 bytes) weight (12 bytes), the weight being the member's stake
///         capped at the committee's maxWeight.
/// @dev `aggregate` adds the signers' keys, or subtracts the non-signers' from the stored sum when more than
///      half signed: at most size/2 ecAdds, none when everyone signed, which keeps an attestation's gas nearly
///      flat in the committee size.
library CommitteeTable {
    uint256 internal constant HEADER_BYTES = 64;
    uint256 internal constant ENTRY_BYTES = 96;
    /// @dev BN254.P, repeated: inline assembly reads only literal constants.
    uint256 private constant P = 21888242871839275222246405745257275088696311157297823662689037894645226208583;
    uint256 private constant WEIGHT_MASK = 0xffffffffffffffffffffffff;

    /// @notice The number of members in `table`.
    function size(bytes memory table) internal pure returns (uint256) {
        return table.length == 0 ? 0 : (table.length - HEADER_BYTES) / ENTRY_BYTES;
    }

    /// @notice The sum of all members' G1 keys ((0, 0) for the empty committee).
    function keySum(bytes memory table) internal pure returns (BN254.G1Point memory sum) {
        if (table.length == 0) return sum;
        assembly ("memory-safe") {
            mstore(sum, mload(add(table, 0x20)))
            mstore(add(sum, 0x20), mload(add(table, 0x40)))
        }
    }

    /// @notice Member `index`: its G1 key, address and weight.
    function member(bytes memory table, uint256 index)
        internal
        pure
        returns (BN254.G1Point memory key, address verifier, uint96 weight)
    {
        uint256 tail;
        assembly ("memory-safe") {
            let entry := add(add(table, add(0x20, HEADER_BYTES)), mul(index, ENTRY_BYTES))
            mstore(key, mload(entry))
            mstore(add(key, 0x20), mload(add(entry, 0x20)))
            tail := mload(add(entry, 0x40))
        }
        verifier = address(uint160(tail >> 96));
        weight = uint96(tail);
    }

    /// @notice A copy of `table` with a member appended (and the key sum updated).
    function append(bytes memory table, BN254.G1Point memory key, address verifier, uint96 weight)
        internal
        view
        returns (bytes memory grown)
    {
        BN254.G1Point memory sum = BN254.add(keySum(table), key);
        bytes memory head = table.length == 0 ? new bytes(HEADER_BYTES) : table;
        grown = bytes.concat(head, abi.encodePacked(key.x, key.y, verifier, weight));
        _setKeySum(grown, sum);
    }

    /// @notice Removes member `index` in place, moving the last member into its place; returns the moved member's
    ///         address (zero if the removed one was last). The key sum loses the removed key.
    function remove(bytes memory table, uint256 index) internal view returns (address moved) {
        (BN254.G1Point memory key,,) = member(table, index);
        _setKeySum(table, BN254.add(keySum(table), BN254.G1Point(key.x, P - key.y)));
        uint256 last = size(table) - 1;
        assembly ("memory-safe") {
            let entries := add(table, add(0x20, HEADER_BYTES))
            if iszero(eq(index, last)) {
                let src := add(entries, mul(last, ENTRY_BYTES))
                let dst := add(entries, mul(index, ENTRY_BYTES))
                mstore(dst, mload(src))
                mstore(add(dst, 0x20), mload(add(src, 0x20)))
                let tail := mload(add(src, 0x40))
                mstore(add(dst, 0x40), tail)
                moved := shr(96, tail)
            }
            mstore(table, add(HEADER_BYTES, mul(last, ENTRY_BYTES)))
        }
    }

    /// @notice The signers' G1 key sum and weight for `bitmap` (bit i = member i); `bitmap` must name members
    ///         only and `totalWeight` be the table's total. Reverts with `BN254.InvalidPoint` if ecAdd fails.
    function aggregate(bytes memory table, uint256 bitmap, uint256 totalWeight)
        internal
        view
        returns (BN254.G1Point memory apk, uint256 signedWeight)
    {
        uint256 n = size(table);
        bool complement = _popcount(bitmap) * 2 > n;
        // Visit the signers, or (complement) the members who did not sign.
        uint256 visit = complement ? ~bitmap & ((1 << n) - 1) : bitmap;
        uint256 visitedWeight;
        bool ok = true;
        assembly ("memory-safe") {
            let entries := add(table, add(0x20, HEADER_BYTES))
            // buf = [sum.x, sum.y, key.x, key.y]; (0, 0) is the identity for ecAdd.
            let buf := mload(0x40)
            mstore(buf, 0)
            mstore(add(buf, 0x20), 0)
            if complement {
                mstore(buf, mload(add(table, 0x20)))
                mstore(add(buf, 0x20), mload(add(table, 0x40)))
            }
            // A shift per member up to the highest one visited (~35 gas), an ecAdd per visited one; measured
            // cheaper than finding each set bit by binary search when a third of the members are visited.
            for { let i := 0 } visit {
                i := add(i, 1)
                visit := shr(1, visit)
            } {
                if iszero(and(visit, 1)) { continue }
                let entry := add(entries, mul(i, ENTRY_BYTES))
                mstore(add(buf, 0x40), mload(entry))
                let y := mload(add(entry, 0x20))
                if complement { y := sub(P, y) }
                mstore(add(buf, 0x60), y)
                ok := and(ok, staticcall(gas(), 0x06, buf, 0x80, buf, 0x40))
                visitedWeight := add(visitedWeight, and(mload(add(entry, 0x40)), WEIGHT_MASK))
            }
            mstore(apk, mload(buf))
            mstore(add(apk, 0x20), mload(add(buf, 0x20)))
        }
        if (!ok) revert BN254.InvalidPoint();
        signedWeight = complement ? totalWeight - visitedWeight : visitedWeight;
    }

    function _setKeySum(bytes memory table, BN254.G1Point memory sum) private pure {
        assembly ("memory-safe") {
            mstore(add(table, 0x20), mload(sum))
            mstore(add(table, 0x40), mload(add(sum, 0x20)))
        }
    }

    /// @dev Set bits of x (x with at most 255 set bits: the byte sums below cannot overflow a byte).
    function _popcount(uint256 x) private pure returns (uint256) {
        unchecked {
            x -= (x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555;
            x = (x & 0x3333333333333333333333333333333333333333333333333333333333333333)
                + ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            return (x * 0x0101010101010101010101010101010101010101010101010101010101010101) >> 248;
        }
    }
}
