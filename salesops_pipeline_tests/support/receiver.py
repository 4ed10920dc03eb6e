"""A chat's incoming webhook on loopback: keeps every message posted to it, and can be told to
refuse the next ones (with `refuse_status`), or to drop their connections without an answer,
as a chat that is down would."""

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
        self.refuse_status = 500
        self.drop_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ours = urlsplit(self.path).path == receiver.PATH
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

    def __enter__(self) -> "ChatReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
