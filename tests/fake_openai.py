"""A local OpenAI-compatible chat server that replays scripted answers, for tests.

It speaks just enough of ``POST /v1/chat/completions`` for the real ``openai`` client:
plain JSON answers, and server-sent events when the request says ``"stream": true``
(chunked transfer encoding, a final usage chunk, then ``data: [DONE]``).

Each request takes the next item of the script, or, when the script is empty, asks
``server.responder(request_json)``. Items say what to do:

- :class:`Reply` answers normally, with the given token usage.
- :class:`Status` answers with an HTTP error (``Status(429, retry_after=0.2)``, ``Status(500)``).
- :class:`Delay` waits, then answers with its ``then`` item (long delays trigger client timeouts).
- :class:`TruncatedStream` sends part of an answer and drops the connection.
- :class:`Malformed` answers 200 with a body that is not JSON.
- :class:`SlowStream` streams an answer a piece at a time, like a slow local model; a client
  that goes away mid-stream is noticed (``server.disconnects``) and the answer is not finished,
  as llama.cpp's servers stop computing a request whose connection closed.

A responder may also return a plain string, short for ``Reply(content=that_string)``.
Every request body is recorded in ``server.requests`` (and its arrival, ``time.monotonic()``,
in ``server.arrivals``); ``server.max_in_flight`` is the most requests the server was handling
at once.

``server.reject_fields`` (a set of body field names, e.g. ``{"grammar"}``) makes the server
answer HTTP 400 "Unrecognized request argument supplied: <field>" to any request carrying one,
as OpenAI does, without using a script item. ``GET /v1/models`` lists one model owned by
``server.owned_by`` (default "fake"), as llama.cpp ("llamacpp"), vLLM ("vllm") and Ollama
("library") answer it; ``server.max_model_len`` adds vLLM's context size to it, and
``server.props`` (a dict) is served at ``GET /props`` as llama-server reports ``n_ctx``.

Use the fixture explicitly::

    from tests.fake_openai import Reply, fake_llm_server  # noqa: F401 (fixture)

    def test_x(fake_llm_server):
        fake_llm_server.script([Reply("hello")])
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Union

import pytest


@dataclass
class Reply:
    """A normal chat completion."""

    content: str = ""
    prompt_tokens: int = 10
    completion_tokens: int = 5
    model: str | None = None  # default: the model the request named
    finish_reason: str = "stop"
    include_usage: bool = True  # False: answer without a usage block, as some local servers do


@dataclass
class Status:
    """An HTTP error answer, with an optional ``Retry-After`` header (seconds)."""

    code: int
    retry_after: float | None = None
    message: str = "scripted error"
    extra: dict = field(default_factory=dict)  # more fields of the error object (llama-server's n_ctx, ...)


@dataclass
class Delay:
    """Wait ``seconds`` before answering with ``then``."""

    seconds: float
    then: Item = field(default_factory=lambda: Reply("late answer"))


@dataclass
class TruncatedStream:
    """Send ``partial_content`` and drop the connection before the answer is complete.

    For a streaming request the SSE chunks stop before the final chunk and ``[DONE]``; with
    ``clean_eof`` the chunked body is terminated properly (the client sees a stream that just
    ends early), otherwise the connection is cut mid-body. For a non-streaming request the
    JSON body is cut short of its announced Content-Length.
    """

    partial_content: str = "HPARAMS = {"
    clean_eof: bool = False


@dataclass
class Malformed:
    """A 200 answer whose body is not JSON (a proxy's HTML error page, say)."""

    body: str = "<html><body>502 Bad Gateway</body></html>"


@dataclass
class SlowStream:
    """Stream ``content`` in ``pieces`` pieces, ``seconds`` apart (a non-streaming request gets
    the whole answer after ``pieces * seconds``). Streams report no usage, as llama-cpp-python."""

    content: str
    pieces: int = 10
    seconds: float = 0.5


Item = Union[Reply, Status, Delay, TruncatedStream, Malformed, SlowStream]
Responder = Callable[[dict], Union[Item, str]]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or dropped a kept-alive connection is expected here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """The server object the fixture yields."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.arrivals: list[float] = []
        self.disconnects = 0  # streams the client closed before the answer was complete
        self.answered: list[Reply] = []  # replies sent promptly with status 200, in order
        self.responder: Responder | None = None
        self.max_in_flight = 0
        self.reject_fields: set[str] = set()
        self.owned_by = "fake"
        self.max_model_len: int | None = None  # reported in /v1/models, as vLLM does
        self.props: dict | None = None  # served at GET /props, as llama.cpp's llama-server does
        self._in_flight = 0
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, items: list[Item | str]) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._queue.extend(Reply(item) if isinstance(item, str) else item for item in items)

    @property
    def pending(self) -> int:
        """Scripted items not yet used."""
        with self._lock:
            return len(self._queue)

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- used by the handler -----------------------------------------------------------

    def _next_item(self, request: dict) -> Item:
        with self._lock:
            self.requests.append(request)
            self.arrivals.append(time.monotonic())
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        if responder is None:
            return Status(400, message=f"fake OpenAI server: no scripted answer left for request #{len(self.requests)}")
        item = responder(request)
        return Reply(item) if isinstance(item, str) else item

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _completion_body(request: dict, reply: Reply) -> dict:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request.get("model", "fake-model"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.content},
            "finish_reason": reply.finish_reason,
        }],
    }
    if reply.include_usage:
        body["usage"] = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
    return body


def _stream_events(request: dict, reply: Reply, pieces: int = 3) -> Iterator[dict]:
    """SSE payloads for ``reply``: role chunk, content in ``pieces``, finish chunk, usage chunk."""
    model = reply.model or request.get("model", "fake-model")
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    size = max(1, -(-len(reply.content) // pieces))
    for start in range(0, len(reply.content), size):
        piece = reply.content[start:start + size]
        yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
    include_usage = (request.get("stream_options") or {}).get("include_usage")
    if include_usage and reply.include_usage:
        yield {**base, "choices": [], "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }}


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/props" and server.props is not None:
                self._send_json(200, server.props)
                return
            if self.path.rstrip("/") != "/v1/models":
                self._send_json(404, {"error": {"message": f"fake OpenAI server: no route {self.path}"}})
                return
            model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": server.owned_by}
            if server.max_model_len is not None:
                model["max_model_len"] = server.max_model_len
            self._send_json(200, {"object": "list", "data": [model]})

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            server._enter()
            self._counted = True
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout): nothing to answer
            finally:
                self._answering()

        def _answering(self) -> None:
            # Leave the in-flight count *before* the answer goes out: a client that got its
            # answer may send its next request at once, and must not be counted twice.
            if self._counted:
                self._counted = False
                server._leave()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send_json(404, {"error": {"message": f"fake OpenAI server: no route {self.path}"}})
                return
            try:
                request = json.loads(raw)
            except ValueError:
                self._send_json(400, {"error": {"message": "fake OpenAI server: request body is not JSON"}})
                return
            rejected = sorted(server.reject_fields & set(request))
            if rejected:
                with server._lock:
                    server.requests.append(request)
                self._send_json(400, {"error": {"message": f"Unrecognized request argument supplied: {rejected[0]}",
                                                "type": "invalid_request_error", "code": None}})
                return
            item = server._next_item(request)
            delayed = False
            while isinstance(item, Delay):
                delayed = True
                if server._stopping.wait(item.seconds):
                    return
                item = item.then
            self._answering()
            streaming = bool(request.get("stream"))
            if isinstance(item, Reply) and not delayed:
                # A delayed reply goes to a client that has usually given up; it is not "answered".
                with server._lock:
                    server.answered.append(item)
            if isinstance(item, Reply):
                if streaming:
                    self._send_stream(request, item)
                else:
                    self._send_json(200, _completion_body(request, item))
            elif isinstance(item, Status):
                headers = {} if item.retry_after is None else {"Retry-After": f"{item.retry_after:g}"}
                self._send_json(item.code, {"error": {"message": item.message, "type": "scripted", "code": str(item.code),
                                                      **item.extra}}, headers)
            elif isinstance(item, TruncatedStream):
                self._send_truncated(request, item, streaming)
            elif isinstance(item, Malformed):
                self._send_raw(200, item.body.encode(), "application/json")
            elif isinstance(item, SlowStream):
                self._send_slow(request, item, streaming)
            else:
                raise TypeError(f"unknown script item {item!r}")

        def _send_raw(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _send_json(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            self._send_raw(code, json.dumps(payload).encode(), "application/json", headers)

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event(self, payload: dict | str) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            self._chunk(f"data: {text}\n\n".encode())

        def _send_stream(self, request: dict, reply: Reply) -> None:
            self._start_stream()
            for event in _stream_events(request, reply):
                self._event(event)
            self._event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _send_slow(self, request: dict, item: SlowStream, streaming: bool) -> None:
            reply = Reply(item.content, include_usage=False)
            if not streaming:
                if server._stopping.wait(item.pieces * item.seconds):
                    return
                self._send_json(200, _completion_body(request, reply))
                return
            self._start_stream()
            try:
                for event in _stream_events(request, reply, pieces=item.pieces):
                    self._event(event)
                    if event["choices"] and event["choices"][0]["delta"].get("content"):
                        if server._stopping.wait(item.seconds):
                            return
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                with server._lock:
                    server.disconnects += 1
                self.close_connection = True

        def _send_truncated(self, request: dict, item: TruncatedStream, streaming: bool) -> None:
            self.close_connection = True
            if not streaming:
                body = json.dumps(_completion_body(request, Reply(item.partial_content))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                return
            self._start_stream()
            events = list(_stream_events(request, Reply(item.partial_content)))
            for event in events:
                if event["choices"] and event["choices"][0]["finish_reason"]:
                    break  # cut before the finish chunk, the usage chunk and [DONE]
                self._event(event)
            if item.clean_eof:
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(b"40\r\ndata: {\"choi")  # half a chunk, then the connection drops
            self.wfile.flush()

    return Handler


@pytest.fixture
def fake_llm_server() -> Iterator[FakeOpenAIServer]:
    """A started :class:`FakeOpenAIServer` on a free local port, stopped after the test."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()
