// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title CodeStore
/// @notice Immutable byte blobs kept as the runtime code of a tiny contract: writing costs 200 gas per byte once,
///         reading all of it costs one EXTCODECOPY (2600 gas cold plus 3 per word) instead of 2100 per slot.
/// @dev The runtime code is a STOP byte followed by the data, so calling the store does nothing.
library CodeStore {
    /// @notice The blob does not fit in a contract (EIP-170: 24576 bytes of runtime code, one used by STOP).
    /// @param length The blob's length in bytes.
    error BlobTooLarge(uint256 length);
    /// @notice CREATE returned no contract.
    error BlobWriteFailed();

    uint256 internal constant MAX_LENGTH = 24575;

    /// @notice Deploys `data` and returns the address that holds it.
    function write(bytes memory data) internal returns (address store) {
        if (data.length > MAX_LENGTH) revert BlobTooLarge(data.length);
        // Init code (10 bytes): PUSH2 len, DUP1, PUSH1 10, PUSH0, CODECOPY, PUSH0, RETURN; then STOP and the data.
        bytes memory init = abi.encodePacked(hex"61", uint16(data.length + 1), hex"80600a5f395ff3", hex"00", data);
        assembly ("memory-safe") {
            store := create(0, add(init, 0x20), mload(init))
        }
        if (store == address(0)) revert BlobWriteFailed();
    }

    /// @notice The blob written at `store` (empty for the zero address).
    function read(address store) internal view returns (bytes memory data) {
        if (store == address(0)) return data;
        uint256 length = store.code.length - 1;
        data = new bytes(length);
        assembly ("memory-safe") {
            extcodecopy(store, add(data, 0x20), 1, length)
        }
    }
}
