"""Answer generators: the offline extractive reader (default) and any OpenAI-compatible chat endpoint by URL.

Both take the question and the reranked contexts and return the answer with the contexts it cites, so the
orchestrator can run them again without one source's contexts (leave-one-context-out contribution).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from rag.errors import GeneratorError
from rag.reader import Context, ExtractiveReader

__all__ = ["ChatGenerator", "ExtractiveGenerator", "Generation", "Generator"]


@dataclass(frozen=True)
class Generation:
    text: str
    cited: tuple[int, ...]  # indices into the contexts given
    short: bool  # a short answer (SQuAD exact match applies) rather than a sentence


class Generator(Protocol):
    name: str

    def generate(self, question: str, contexts: Sequence[Context]) -> Generation: ...


class ExtractiveGenerator:
    """The answer is the reader's best sentence; it cites the one context it came from."""

    name = "extractive"

    def __init__(self, reader: ExtractiveReader):
        self.reader = reader

    def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        answer = self.reader.read(question, contexts)
        return Generation(answer.text, (answer.context_index,), short=False)


_SYSTEM_PROMPT = (
    "Answer the question using only the numbered passages. Reply with the shortest phrase that answers it, "
    "then the numbers of the passages you used in brackets, e.g. `Paris [2]`. If the passages disagree, "
    "prefer the passages listed first: they come from more reliable sources."
)
_CITATION = re.compile(r"\[(\d+)\]")


class ChatGenerator:
    """A chat-completions endpoint (`POST {base_url}/chat/completions`): vLLM, llama.cpp, Ollama, OpenAI."""

    name = "chat"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_tokens: int = 48,
        transport: httpx.BaseTransport | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise GeneratorError(f"chat endpoint must be an http(s) URL, got {base_url!r}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.max_tokens = max_tokens
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                    transport=transport)  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        if not contexts:
            raise GeneratorError("no context to answer from")
        passages = "\n\n".join(f"[{i + 1}] {ctx.title}: {ctx.text}" for i, ctx in enumerate(contexts))
        payload = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "messages": [
                {"role": "system", "content": _SYSTEM_PROMPT},
                {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {question}"},
            ],
        }
        try:
            reply = self._client.post("/chat/completions", json=payload)
            reply.raise_for_status()
            content = reply.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as exc:
            raise GeneratorError(f"chat endpoint answered HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise GeneratorError(f"chat endpoint unreachable: {type(exc).__name__}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise GeneratorError("chat endpoint answered something that is not a chat completion") from None
        if not isinstance(content, str) or not content.strip():
            raise GeneratorError("chat endpoint returned an empty answer")
        cited = tuple(sorted({int(n) - 1 for n in _CITATION.findall(content) if 0 < int(n) <= len(contexts)}))
        text = _CITATION.sub("", content).strip().rstrip(".").strip()
        return Generation(text or content.strip(), cited, short=True)
