"""Corpora as JSONL (the SQuAD fixture's format), document hashes and the Merkle commitment a source registers.

A document's hash is keccak256 over a tagged, length-prefixed encoding of (doc_id, title, text); the corpus
commitment is the root of a Merkle tree over the hashes with sorted pairs, the layout OpenZeppelin's
`MerkleProof` verifies, so `SourceRegistry.verifyDocument` can check any proof a node hands out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from eth_utils import keccak

from rag.errors import CorpusError

__all__ = [
    "DEFAULT_CORPUS",
    "Corpus",
    "Document",
    "Question",
    "load_corpus",
    "merkle_proof",
    "merkle_root",
    "verify_proof",
]

# The packaged copy of the SQuAD excerpt (see rag/data/README.md for its attribution).
DEFAULT_CORPUS = Path(str(resources.files("rag") / "data" / "squad_paragraphs.jsonl"))
_DOC_TAG = b"trustmarket-doc\x00"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str

    @property
    def hash(self) -> bytes:
        """keccak256 of the tagged encoding; the tag keeps a document from ever hashing like an inner node."""
        parts = [p.encode() for p in (self.doc_id, self.title, self.text)]
        return keccak(_DOC_TAG + b"".join(len(p).to_bytes(4, "big") + p for p in parts))

    def to_json(self) -> dict[str, str]:
        return {"doc_id": self.doc_id, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class Corpus:
    """The documents a source holds (and, for evaluation corpora, the questions about them)."""

    documents: tuple[Document, ...]
    questions: tuple[Question, ...] = ()
    _positions: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positions = {doc.doc_id: i for i, doc in enumerate(self.documents)}
        if len(positions) != len(self.documents):
            raise CorpusError("document ids must be unique within a corpus")
        self._positions.update(positions)

    def __len__(self) -> int:
        return len(self.documents)

    def position(self, doc_id: str) -> int:
        try:
            return self._positions[doc_id]
        except KeyError:
            raise CorpusError(f"no document {doc_id!r} in this corpus") from None

    def document(self, doc_id: str) -> Document:
        return self.documents[self.position(doc_id)]

    @property
    def hashes(self) -> list[bytes]:
        return [doc.hash for doc in self.documents]

    @property
    def commitment(self) -> bytes:
        return merkle_root(self.hashes)

    def proof(self, doc_id: str) -> list[bytes]:
        return merkle_proof(self.hashes, self.position(doc_id))

    def with_documents(self, documents: Iterable[Document]) -> Corpus:
        return Corpus(tuple(documents), self.questions)


def load_corpus(path: Path | str = DEFAULT_CORPUS) -> Corpus:
    """Read a JSONL corpus: `doc_id`, `title`, `context` (or `text`) and optional `questions`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorpusError(f"no corpus at {path}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise CorpusError(f"cannot read corpus {path}: {exc}") from None
    documents: list[Document] = []
    questions: list[Question] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            doc = Document(str(record["doc_id"]), str(record.get("title", "")),
                           str(record["context"] if "context" in record else record["text"]))  # fmt: skip
            for q in record.get("questions", []):
                answers = tuple(str(a) for a in q["answers"])
                if not answers:
                    raise ValueError("a question without answers")
                questions.append(Question(str(q["id"]), str(q["question"]), answers, doc.doc_id))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorpusError(f"{path}:{number}: not a corpus record ({type(exc).__name__}: {exc})") from None
        if not doc.text.strip():
            raise CorpusError(f"{path}:{number}: document {doc.doc_id!r} has no text")
        documents.append(doc)
    if not documents:
        raise CorpusError(f"{path} holds no documents")
    return Corpus(tuple(documents), tuple(questions))


def _parent(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over `leaves` (32-byte hashes) with sorted pairs; an odd node is carried up unchanged."""
    if not leaves:
        raise CorpusError("cannot commit to an empty corpus")
    level = list(leaves)
    while len(level) > 1:
        level = [_parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]  # fmt: skip
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root."""
    if not 0 <= index < len(leaves):
        raise CorpusError(f"leaf {index} outside 0..{len(leaves) - 1}")
    proof: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = [_parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]  # fmt: skip
        index //= 2
    return proof


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """OpenZeppelin's `MerkleProof.verify`: fold the proof over the leaf with sorted pairs."""
    node = leaf
    for sibling in proof:
        node = _parent(node, sibling)
    return node == root
