"""Thousands of Socket.IO clients over WebSocket in one asyncio process, for the capacity test and bench.

python-socketio's client costs a thread or two per connection; this speaks just enough of the protocols
(RFC 6455 frames, Engine.IO 4 open/ping/pong/message, Socket.IO 5 CONNECT/EVENT) to hold 10,000 sockets in
one process with little CPU, so that the server, not the clients, is what a measurement sees.

Run as a process (`python -m support.socket_swarm` with tests/ on sys.path), driven by JSON lines:
stdin  {"url": "http://host:port", "auths": [{...}, ...]}  then commands: "drop <n>" (close every n-th socket),
       "record", "report", "quit"
stdout {"connected": n, "failed": n, "errors": [...], "seconds": s}, {"open": n}, {"recording": true},
       {"received": n, "latencies": [s, ...], "cpu_seconds": s}
A latency is the time from the event's `time` field (set when it was published) to its arrival here.
`SwarmProcess` starts and drives one such process.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 30.0
CONNECTING_AT_ONCE = 64


def _frame(text: str) -> bytes:
    """One masked text frame (clients must mask)."""
    data, mask = text.encode(), os.urandom(4)
    size = len(data)
    head = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size))
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(data, "big") ^ key).to_bytes(size, "big")
    return head + mask + masked


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


class Swarm:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.sockets: dict[int, tuple[asyncio.StreamWriter, asyncio.Task]] = {}  # by position in the auths
        self.recording, self.latencies, self.received = False, [], 0

    async def open(self, index: int, auth: dict) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
            _op, opened = await _read_frame(reader)  # Engine.IO OPEN: 0{"sid":...}
            if not opened.startswith(b"0"):
                raise ConnectionError(f"no Engine.IO open: {opened[:80]!r}")
            writer.write(_frame("40" + json.dumps(auth)))
            _op, answer = await _read_frame(reader)
            while answer == b"2":  # a ping before the answer (a slow server): pong, keep waiting
                writer.write(_frame("3"))
                _op, answer = await _read_frame(reader)
            if not answer.startswith(b"40"):
                raise ConnectionError(f"Socket.IO connect refused: {answer[:120]!r}")
        except BaseException:
            writer.close()
            raise
        self.sockets[index] = (writer, asyncio.create_task(self._listen(reader, writer)))

    async def _listen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                opcode, data = await _read_frame(reader)
                if opcode == 8:
                    return
                if data == b"2":  # Engine.IO ping: answer it, or the server drops the socket
                    writer.write(_frame("3"))
                elif data.startswith(b"42"):
                    self._event(data[2:])
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    def _event(self, body: bytes) -> None:
        arrived = time.time()
        if not self.recording:
            return
        _name, payload = json.loads(body)[:2]
        self.received += 1
        self.latencies.append(arrived - datetime.fromisoformat(payload["time"]).timestamp())

    async def connect_all(self, auths: list[dict]) -> dict:
        started, gate, errors = time.perf_counter(), asyncio.Semaphore(CONNECTING_AT_ONCE), []

        async def one(index, auth):
            async with gate:
                try:
                    await asyncio.wait_for(self.open(index, auth), CONNECT_TIMEOUT)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(repr(exc)[:200])

        await asyncio.gather(*(one(i, a) for i, a in enumerate(auths)))
        return {"connected": len(auths) - len(errors), "failed": len(errors), "errors": errors[:5],
                "seconds": time.perf_counter() - started}

    def drop(self, every: int) -> dict:
        """Close every `every`-th socket, all at once (a mass disconnect)."""
        for index in [i for i in self.sockets if i % every == every - 1]:
            writer, task = self.sockets.pop(index)
            writer.close()
            task.cancel()
        return {"open": len(self.sockets)}

    def report(self) -> dict:
        cpu = os.times()
        return {"received": self.received, "latencies": self.latencies, "cpu_seconds": cpu.user + cpu.system,
                "open": sum(not task.done() for _writer, task in self.sockets.values())}


class SwarmProcess:
    """The parent's handle on a swarm process: `start` connects its sockets, `ask` sends one command."""

    def __init__(self, url: str, auths: list[dict]):
        self.proc = subprocess.Popen([sys.executable, "-m", "support.socket_swarm"], cwd=Path(__file__).parents[1],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(json.dumps({"url": url, "auths": auths}) + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the swarm process exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.result()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def main() -> None:
    from reportflow_common.serve import raise_open_file_limit

    raise_open_file_limit()
    loop = asyncio.get_running_loop()

    def say(doc: dict) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    config = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    swarm = Swarm(config["url"])
    say(await swarm.connect_all(config["auths"]))
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if command.startswith("drop "):
            say(swarm.drop(int(command.split()[1])))
        elif command == "record":
            swarm.recording = True
            say({"recording": True})
        elif command == "report":
            say(swarm.report())
        elif command == "quit":
            break
    for writer, _task in swarm.sockets.values():
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
