"""Corpus loading, document hashes and the Merkle commitment (OpenZeppelin layout)."""

from __future__ import annotations

import json

import pytest
from eth_utils import keccak

from rag.corpus import DEFAULT_CORPUS, Corpus, Document, load_corpus, merkle_proof, merkle_root, verify_proof
from rag.errors import CorpusError


def test_packaged_corpus_is_the_fixture(squad):
    packaged = load_corpus()
    assert DEFAULT_CORPUS.name == "squad_paragraphs.jsonl"
    assert len(packaged) == len(squad) == 126
    assert len(packaged.questions) == 473
    assert packaged.commitment == squad.commitment
    first = packaged.questions[0]
    assert (first.doc_id, first.answers) == ("Normans#0", ("France",))


def test_document_hash_binds_every_field():
    doc = Document("d1", "T", "text")
    assert len(doc.hash) == 32
    assert len({doc.hash, Document("d2", "T", "text").hash, Document("d1", "U", "text").hash,
                Document("d1", "T", "text!").hash}) == 4  # fmt: skip
    # Length prefixes: moving a character between fields changes the hash.
    assert Document("ab", "c", "x").hash != Document("a", "bc", "x").hash


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 9])
def test_every_proof_verifies_and_forgeries_fail(size):
    leaves = [keccak(text=f"leaf {i}") for i in range(size)]
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        assert verify_proof(leaf, merkle_proof(leaves, i), root)
    assert not verify_proof(keccak(text="forged"), merkle_proof(leaves, 0), root)
    if size > 1:
        assert not verify_proof(leaves[0], merkle_proof(leaves, 1), root)


def test_merkle_errors():
    with pytest.raises(CorpusError, match="empty"):
        merkle_root([])
    with pytest.raises(CorpusError, match="outside"):
        merkle_proof([b"\x00" * 32], 1)


def test_corpus_proof_and_lookup(small_corpus):
    doc = small_corpus.documents[3]
    assert verify_proof(doc.hash, small_corpus.proof(doc.doc_id), small_corpus.commitment)
    assert small_corpus.document(doc.doc_id) is doc
    with pytest.raises(CorpusError, match="no document"):
        small_corpus.position("missing")
    with pytest.raises(CorpusError, match="unique"):
        Corpus((doc, doc))


def _write(tmp_path, lines):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lines, message",
    [
        (["{not json"], "c.jsonl:1"),
        ([json.dumps({"title": "x", "context": "y"})], "doc_id"),
        ([json.dumps({"doc_id": "a", "context": "y", "questions": [{"id": "q", "question": "?", "answers": []}]})],
         "without answers"),
        ([json.dumps({"doc_id": "a", "context": "  "})], "no text"),
        ([""], "no documents"),
        ([json.dumps({"doc_id": "a", "context": "x"}), json.dumps({"doc_id": "a", "context": "y"})], "unique"),
    ],
)  # fmt: skip
def test_bad_corpus_files(tmp_path, lines, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(_write(tmp_path, lines))


def test_missing_and_unreadable_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no corpus"):
        load_corpus(tmp_path / "absent.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CorpusError, match="cannot read"):
        load_corpus(tmp_path / "bin.jsonl")


def test_text_field_and_no_questions(tmp_path):
    corpus = load_corpus(_write(tmp_path, [json.dumps({"doc_id": 7, "text": "Plain text."})]))
    assert corpus.documents[0] == Document("7", "", "Plain text.")
    assert corpus.questions == ()
