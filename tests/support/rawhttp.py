"""HTTP/1.1 written byte by byte, for requests no client library will send (CR, LF or NUL in a header,
a 100 KB header, a broken chunk): the answer is read until the server closes or the deadline passes."""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self):
        return json.loads(self.body)


def raw_request(url: str, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send `request` as is to the server of `url`; parse the one response (Content-Length framed)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                headers = _headers(head)
                if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                    break
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    if not head:
        raise AssertionError(f"no answer from {url} within {timeout}s")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    headers = _headers(head)
    return RawResponse(int(status_line.split(" ")[1]), headers, body[:int(headers.get("content-length", len(body)))])


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


def get(path: str, *headers: bytes, host: bytes = b"localhost") -> bytes:
    """A GET request with extra raw header lines (each without its CRLF)."""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + b"".join(h + b"\r\n" for h in headers) \
        + b"Connection: close\r\n\r\n"
