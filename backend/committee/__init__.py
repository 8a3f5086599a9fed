"""The verifier committee's services: BLS maths (`bls`, pure), key files (`keys`), signing and aggregating
round attestations (`attestation`), the shared signature folder (`exchange`) and the member's loop (`service`).

The on-chain side is `backend.chain.verifier_committee` (a typed facade over VerifierCommittee.sol); the
recomputation a member signs is `backend.marketplace.recompute`. Submodules are imported where used.
"""

__all__ = ["attestation", "bls", "exchange", "keys", "service"]
