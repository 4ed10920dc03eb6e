"""A chat's incoming webhook on loopback: keeps every message posted to it, and can be told to
refuse the next ones (with the status and `Retry-After` of a chat that is down or busy), to
drop their connections without an answer, to answer late, or to stop listening altogether."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class ChatReceiver:
    # The path plays the part of Slack's secret token in the URL.
    PATH = "/services/T000/B000/secret-token"

    def __init__(self, query: str = ""):
        # A query of secrets, as Google Chat's `?key=...&token=...`; the receiver ignores it.
        self.query = query
        self.messages: list[dict] = []
        # When each message arrived (time.time()).
        self.arrivals: list[float] = []
        self.refuse_next = 0
        # How the next ones are refused.
        self.refuse_status = 500
        self.retry_after: str | None = None
        # Connections dropped without an answer, as a chat that is down would.
        self.drop_next = 0
        # Seconds every answer waits before it goes (a chat that hangs).
        self.answer_after = 0.0
        # Requests that reached it, refused ones included.
        self.requests = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ours = urlsplit(self.path).path == receiver.PATH
                with receiver._lock:
                    receiver.requests += 1
                receiver._closing.wait(receiver.answer_after)
                with receiver._lock:
                    drop = receiver.drop_next > 0
                    refuse = not drop and receiver.refuse_next > 0
                    if drop:
                        receiver.drop_next -= 1
                    elif refuse:
                        receiver.refuse_next -= 1
                    elif ours:
                        receiver.messages.append(json.loads(body))
                        receiver.arrivals.append(time.time())
                if drop:
                    # No answer at all: the client sees the connection broken.
                    self.close_connection = True
                    return
                status = receiver.refuse_status if refuse else 200 if ours else 404
                self.send_response(status)
                if refuse and receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.PATH}{query}"

    def texts(self) -> list[str]:
        with self._lock:
            return [message["text"] for message in self.messages]

    def down(self) -> None:
        """Stop listening, as a chat that is down: connections to it are refused."""
        self._stop()

    def up(self) -> None:
        """Listen again on the same port."""
        port = self._server.server_address[1]
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._server.RequestHandlerClass)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> "ChatReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._stop()

    def _stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
