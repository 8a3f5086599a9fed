"""The folder a committee shares for signature files, one per verifier and round result.

Verifiers drop their signatures here and whoever sees a quorum aggregates them; the chain, not the folder, decides
what counts, so an unreadable or foreign file is logged and skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from web3 import Web3

from backend.committee.attestation import VerifierSignature

__all__ = ["SignatureExchange"]

log = logging.getLogger(__name__)


class SignatureExchange:
    """A folder verifiers share: `<root>/<market>/<project>/<round>/<verifier>.json`, one signature per file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _folder(self, market: str, project_id: int, round_: int) -> Path:
        return self.root / Web3.to_checksum_address(market) / str(project_id) / str(round_)

    def put(self, signature: VerifierSignature) -> Path:
        folder = self._folder(signature.market, signature.project_id, signature.round)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{signature.verifier}.json"
        # Write then rename, so a reader never sees half a file.
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(signature.to_json(), indent=2, sort_keys=True))
        partial.replace(path)
        return path

    def collect(self, market: str, project_id: int, round_: int) -> list[VerifierSignature]:
        """Every readable signature for the round; unreadable files are logged and skipped (the chain decides)."""
        signatures = []
        for path in sorted(self._folder(market, project_id, round_).glob("*.json")):
            try:
                signatures.append(VerifierSignature.from_json(json.loads(path.read_text())))
            except (OSError, ValueError) as exc:
                log.warning("skipping signature file %s: %s", path, exc)
        return signatures
