"""Generators: the chat-completions client against a small OpenAI-compatible server on loopback."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from rag.errors import GeneratorError
from rag.generators import ChatGenerator, ExtractiveGenerator
from rag.reader import Context, ExtractiveReader
from rag.serve import start_background_server

CONTEXTS = [
    Context("Hastein was a Viking chieftain.", 0.4, 2, "d2"),
    Context("Rollo was the leader of the Norse raiders.", 0.9, 1, "d1"),
]


def fake_openai() -> FastAPI:
    """Answers like a chat model: it reads the passages it was sent and cites the one naming the leader."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        app.state.requests.append({"body": body, "auth": request.headers.get("authorization")})
        prompt = body["messages"][-1]["content"]
        mode = body["model"]
        if mode == "broken":
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if mode == "garbage":
            return PlainTextResponse("not json")
        if mode == "empty":
            return {"choices": [{"message": {"role": "assistant", "content": "  "}}]}
        number = next(line.split("]")[0].strip("[") for line in prompt.splitlines() if "leader" in line)
        return {"choices": [{"message": {"role": "assistant", "content": f"Rollo [{number}] [9]."}}]}

    return app


@pytest.fixture(scope="module")
def server():
    app = fake_openai()
    server = start_background_server(app)
    yield server, app
    server.stop()


def test_chat_generator_sends_passages_and_parses_citations(server):
    srv, app = server
    generator = ChatGenerator(srv.url + "/v1", "tiny", api_key="sk-test")
    generation = generator.generate("Who led the Norse?", CONTEXTS)
    generator.close()
    assert (generation.text, generation.cited, generation.short) == ("Rollo", (1,), True)  # [9] is no passage
    sent = app.state.requests[-1]
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"]["temperature"] == 0 and sent["body"]["model"] == "tiny"
    assert "[2] : Rollo was the leader" in sent["body"]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "model, message",
    [("broken", "HTTP 503"), ("garbage", "not a chat completion"), ("empty", "empty answer")],
)
def test_chat_generator_failures(server, model, message):
    srv, _ = server
    with pytest.raises(GeneratorError, match=message):
        ChatGenerator(srv.url + "/v1", model).generate("Who?", CONTEXTS)


def test_chat_endpoint_down_or_bad_url():
    from backend.chain.anvil import free_port

    with pytest.raises(GeneratorError, match="unreachable"):
        ChatGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=2).generate("Who?", CONTEXTS)
    with pytest.raises(GeneratorError, match="http"):
        ChatGenerator("ftp://example/v1", "m")
    with pytest.raises(GeneratorError, match="no context"):
        ChatGenerator("http://127.0.0.1:1/v1", "m").generate("Who?", [])


def test_extractive_generator_cites_its_sentence(embedder):
    generation = ExtractiveGenerator(ExtractiveReader(embedder)).generate(
        "Who was the leader of the Norse?", CONTEXTS
    )
    assert generation.text == "Rollo was the leader of the Norse raiders." and generation.cited == (1,)
    assert generation.short is False
