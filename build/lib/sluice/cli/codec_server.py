"""`sluice codec-server`: Sluice's payload encryption served over HTTP for the Web UI and CLI.

It speaks Temporal's codec-server protocol: `POST .../decode` and `POST .../encode` under any
path prefix (the UI appends `/decode` to its endpoint; `/default/decode` works too) take and
return `{"payloads": [...]}` in protobuf JSON (base64 `metadata` values and `data`). Browsers
may call it only from the `--ui-origin`s: the CORS preflight is answered for those alone, and
a request carrying any other `Origin` is refused. Anyone who reaches the port can decrypt,
which is why it listens on loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from sluice.cli.exits import CliError, ExitCode
from sluice.runtime.codec import KEY_ENV, CodecKeyError, EncryptionCodec, key_from_env

DEFAULT_PORT = 8081
DEFAULT_UI_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")
"""The dev server's Web UI (`sluice dev`), by address and by name."""
ALLOWED_HEADERS = "content-type, x-namespace, authorization"
"""What the Web UI sends (temporalio/ui data-encoder.ts); authorization with "pass access token"."""
MAX_BODY = 64 * 1024 * 1024


def ui_origin(value: str) -> str:
    """argparse type: an origin as browsers send it, `scheme://host[:port]`, without a path."""
    parts = urlsplit(value.strip().removesuffix("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an origin like http://127.0.0.1:8233 (scheme, host and port, no path)"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


class CodecServer(ThreadingHTTPServer):
    """Holds the codec and the allowed origins for its handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: EncryptionCodec, ui_origins: frozenset[str]) -> None:
        super().__init__(address, CodecHandler)
        self.codec = codec
        self.ui_origins = ui_origins

    def handle_error(self, request: object, client_address: object) -> None:
        # One line instead of socketserver's traceback (e.g. a client that hung up mid-reply).
        err = sys.exc_info()[1]
        print(f"codec server: a request failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


class CodecHandler(BaseHTTPRequestHandler):
    server: CodecServer
    disable_nagle_algorithm = True  # else each reply waits ~40 ms for a delayed ACK

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, "use POST on a path ending in /encode or /decode")

    def do_OPTIONS(self) -> None:
        if self._operation() is not None and self._origin_allowed():
            self._reply(HTTPStatus.NO_CONTENT, "", preflight=True)

    def do_POST(self) -> None:
        operation = self._operation()
        if operation is None or not self._origin_allowed():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._reply(HTTPStatus.BAD_REQUEST, f"Content-Length must be 0 to {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        try:
            request = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as err:
            self._reply(HTTPStatus.BAD_REQUEST, f'body is not {{"payloads": [...]}} in protobuf JSON: {err}')
            return
        convert = self.server.codec.encrypt if operation == "encode" else self.server.codec.decrypt
        try:
            payloads: list[Payload] = [convert(p) for p in request.payloads]
        except ValueError as err:  # another key, or an altered payload
            self._reply(HTTPStatus.BAD_REQUEST, f"cannot {operation}: {err}")
            return
        document = {"payloads": [json_format.MessageToDict(p) for p in payloads]}
        self._reply(HTTPStatus.OK, json.dumps(document), content_type="application/json")

    def _operation(self) -> str | None:
        """`encode` or `decode` from the path's last segment; otherwise answer 404 and give None."""
        last = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        if last in ("encode", "decode"):
            return last
        self._reply(HTTPStatus.NOT_FOUND, "codec server paths end in /encode or /decode")
        return None

    def _origin_allowed(self) -> bool:
        """No `Origin` (a CLI) or an allowed one; otherwise answer 403 without CORS headers."""
        origin = self.headers.get("Origin")
        if origin is None or origin in self.server.ui_origins:
            return True
        self._reply(
            HTTPStatus.FORBIDDEN,
            f"origin {origin} may not use this codec server (start it with --ui-origin {origin})",
        )
        return False

    def _reply(
        self, status: HTTPStatus, body: str, content_type: str = "text/plain", preflight: bool = False
    ) -> None:
        data = body.encode()
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin in self.server.ui_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            # The UI's "include cross-origin credentials" setting needs this; no cookie is read here.
            self.send_header("Access-Control-Allow-Credentials", "true")
            if preflight:
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
                self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Vary", "Origin")
        if data:
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def run_codec_server(ip: str, port: int, ui_origins: list[str]) -> int:
    """Serve until interrupted; no usable key is exit 2 and a taken port exit 5, before listening."""
    try:
        key = key_from_env()
    except CodecKeyError as err:
        raise CliError(str(err), ExitCode.INVALID) from None
    if key is None:
        raise CliError(
            f"{KEY_ENV} is not set: give the codec server the key the workers and CLIs use.", ExitCode.INVALID
        )
    codec = EncryptionCodec(key)
    try:
        server = CodecServer((ip, port), codec, frozenset(ui_origins))
    except OSError as err:
        raise CliError(f"cannot listen on {ip}:{port}: {err.strerror}.", ExitCode.UNAVAILABLE) from None
    url = f"http://{ip}:{port}"
    lines = [
        f"codec server: {url} (key id {codec.key_id} from {KEY_ENV})",
        f"browsers allowed from: {', '.join(ui_origins)}",
        f"Web UI: `sluice dev --ui-codec-endpoint {url}`, or the UI's Data Encoder setting",
        f"CLI:    temporal workflow show --codec-endpoint {url} -w rollout-SERVICE",
    ]
    if ip not in ("127.0.0.1", "localhost"):
        lines.append(f"warning: anyone who can reach {ip}:{port} can decrypt these payloads")
    print(*lines, "Ctrl-C stops it.", sep="\n", flush=True)
    with server:
        server.serve_forever()
    return ExitCode.OK
