"""Slack's Socket Mode endpoint, on 127.0.0.1, for end-to-end tests.

`FakeSlack.serve_socket_mode` hands out this server's URLs from `apps.connections.open`;
each carries a single-use ticket, like Slack's. A connection is greeted with `hello`, then
receives the envelopes a test delivers (`slash_commands`, `events_api`, `interactive`); every
ack is recorded with the time it took. Pings are answered. A connection can be ended the two
ways Slack's end: politely (a `disconnect` message), or abruptly (`drop`: the connection goes
silent as after a network failure, with no close frame, no FIN, no pongs and nothing
delivered), which only the client's own liveness check can notice.

What a client does that Slack would refuse (a used or unknown ticket, an unmasked frame, an
ack for no envelope, a response payload where none is accepted) is recorded in `violations`,
so `assert_no_violations()` fails a test that did not look.

Standard library only (the server side of RFC 6455 is small), so the fake cannot drift with
the WebSocket library the bot uses.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.slack_payloads import APP_ID

Json = dict[str, Any]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
_MAX_MESSAGE = 1 << 20
_ACCEPTS_PAYLOAD = {
    "slash_commands": True,
    "events_api": False,
    # A modal's submission is answered in the ack (`response_action`); a button press is not.
    "interactive": False,
}
_INTERACTIONS_ANSWERED_IN_THE_ACK = frozenset({"view_submission", "block_suggestion"})


@dataclass(frozen=True)
class Ack:
    """One envelope acknowledged, and how long after it was sent."""

    envelope_id: str
    payload: Json | None
    seconds: float
    connection: int


@dataclass
class Envelope:
    """One envelope as sent to the bot."""

    envelope_id: str
    type: str
    payload: Json
    accepts_response_payload: bool
    connection: int
    sent_at: float
    ack: Ack | None = None
    _acked: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait_ack(self, timeout: float = 5.0) -> Ack:
        """The ack, once it arrives; fails the test if none came within `timeout` seconds."""
        if not self._acked.wait(timeout):
            raise AssertionError(
                f"{self.type} envelope {self.envelope_id} not acked in {timeout} s"
            )
        assert self.ack is not None
        return self.ack


class _Connection:
    """One accepted WebSocket: its state and the thread that reads it."""

    def __init__(self, server: FakeSocketMode, index: int, sock: socket.socket) -> None:
        self.server = server
        self.index = index
        self.sock = sock
        # handshake, then open; retiring (sent disconnect), dropped, hung_up, closed
        self.state = "handshake"
        self.pings = 0
        self._send_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"fakesocket-{index}", daemon=True)

    # -- writing

    def send_frame(self, opcode: int, payload: bytes) -> bool:
        """Write one unmasked frame; never on a dropped or closed connection."""
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self._send_lock:
            if self.state in ("dropped", "hung_up", "closed"):
                return False
            try:
                self.sock.sendall(header + payload)
            except OSError:
                return False
        return True

    def send_json(self, message: Json) -> bool:
        return self.send_frame(_TEXT, json.dumps(message).encode())

    # -- reading

    def _run(self) -> None:
        try:
            if not self._handshake():
                self._close_socket()
                return
            self.server._greet(self)
            self._read_frames()
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            if self.state != "dropped":  # a dropped connection stays silently open
                self._close_socket()

    def _recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            data += chunk
        return data

    def _handshake(self) -> bool:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = self.sock.recv(4096)
            if not chunk or len(request) > 16_384:
                return False
            request += chunk
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        request_line, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        method, target, *_ = [*request_line.split(" "), "", ""]
        url = urlsplit(target)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        key = headers.get("sec-websocket-key", "")
        if (
            method != "GET"
            or headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in headers.get("connection", "").lower()
            or headers.get("sec-websocket-version") != "13"
            or not key
        ):
            self.server._violation(f"connection {self.index}: not a WebSocket handshake")
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        if url.path != "/link/" or not self.server._redeem(ticket):
            self.server._violation(
                f"connection {self.index}: ticket {ticket!r} is unknown or already used "
                "(each apps.connections.open URL works once)"
            )
            self.sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        self.sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        return True

    def _read_frame(self) -> tuple[int, bool, bytes]:
        first, second = self._recv_exact(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        masked, size = bool(second & 0x80), second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._recv_exact(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._recv_exact(8))
        if size > _MAX_MESSAGE:
            raise ValueError("frame too large")
        if not masked:
            self.server._violation(f"connection {self.index}: a client frame was not masked")
        mask = self._recv_exact(4) if masked else b"\0\0\0\0"
        data = bytearray(self._recv_exact(size))
        for i in range(size):
            data[i] ^= mask[i % 4]
        return opcode, fin, bytes(data)

    def _read_frames(self) -> None:
        message, message_opcode = b"", _TEXT
        while True:
            opcode, fin, data = self._read_frame()
            if self.state == "dropped":
                return  # silent from now on: nothing read is answered, nothing is sent
            if self.state == "hung_up":
                continue  # read until the client closes too, answering nothing
            if opcode == _PING:
                self.pings += 1
                self.send_frame(_PONG, data)
            elif opcode == _PONG:
                continue
            elif opcode == _CLOSE:
                self.send_frame(_CLOSE, data[:2])
                return
            else:
                if opcode != _CONTINUATION:
                    message, message_opcode = b"", opcode
                message += data
                if fin:
                    self.server._received(self, message_opcode, message)

    def _close_socket(self) -> None:
        with self._send_lock:
            self.state = "closed"
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeSocketMode:
    """A local Socket Mode server: tickets, connections, envelopes, acks and faults."""

    def __init__(self, *, app_id: str = APP_ID) -> None:
        self.app_id = app_id
        self.envelopes: list[Envelope] = []
        self.acks: list[Ack] = []
        self.violations: list[str] = []
        self.tickets_issued = 0
        self._lock = threading.Condition()
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._numbers = itertools.count(1)
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle

    def start(self) -> FakeSocketMode:
        if self._listener is None:
            self._stopping.clear()
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._listener.settimeout(0.05)
            self._accepting = threading.Thread(
                target=self._accept, name="fakesocket-accept", daemon=True
            )
            self._accepting.start()
        return self

    def stop(self) -> None:
        """Close everything, dropped connections included."""
        self._stopping.set()
        if self._accepting is not None:
            self._accepting.join(timeout=5)
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection._close_socket()
        for connection in connections:
            if connection.thread.is_alive():
                connection.thread.join(timeout=5)

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("FakeSocketMode is not started")
        return int(self._listener.getsockname()[1])

    def new_url(self) -> str:
        """A WebSocket URL with a fresh single-use ticket (what apps.connections.open returns)."""
        ticket = secrets.token_hex(8)
        with self._lock:
            self._tickets.add(ticket)
            self.tickets_issued += 1
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- looking at connections

    def connection_count(self) -> int:
        """Connections that were greeted with `hello`, whatever became of them."""
        with self._lock:
            return sum(1 for c in self._connections if c.state != "handshake")

    def open_connections(self) -> list[int]:
        with self._lock:
            return [c.index for c in self._connections if c.state == "open"]

    def wait_for_connection(self, *, newer_than: int = 0, timeout: float = 10.0) -> int:
        """The number of an open connection greeted after connection `newer_than`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c.index for c in self._connections if c.state == "open"]
                found = [index for index in found if index > newer_than]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no new Socket Mode connection within {timeout} s")
                self._lock.wait(left)

    def pings(self, connection: int) -> int:
        return self._connection(connection).pings

    # -- delivering

    def slash_command(self, form: dict[str, str], *, timeout: float = 10.0) -> Envelope:
        """A slash command, as `tests.slack_payloads.slash_command` builds its fields."""
        return self.deliver("slash_commands", form, timeout=timeout)

    def event(
        self,
        callback: Json,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 10.0,
    ) -> Envelope:
        """An Events API envelope, as `tests.slack_payloads.event_callback` builds it."""
        return self.deliver(
            "events_api",
            callback,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            timeout=timeout,
        )

    def interactive(self, payload: Json, *, timeout: float = 10.0) -> Envelope:
        """A button press, shortcut or modal submission from `tests.slack_payloads`."""
        return self.deliver("interactive", payload, timeout=timeout)

    def deliver(
        self,
        kind: str,
        payload: Json,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 10.0,
    ) -> Envelope:
        """Send one envelope over the newest open connection, waiting up to `timeout` seconds
        for one: Slack, too, only sends over connections it holds open."""
        accepts = _ACCEPTS_PAYLOAD[kind] or (
            kind == "interactive" and payload.get("type") in _INTERACTIONS_ANSWERED_IN_THE_ACK
        )
        message: Json = {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts,
        }
        if kind == "events_api":
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = retry_reason
        deadline = time.monotonic() + timeout
        while True:
            index = self.wait_for_connection(timeout=max(0.0, deadline - time.monotonic()))
            connection = self._connection(index)
            envelope = Envelope(
                envelope_id=message["envelope_id"],
                type=kind,
                payload=payload,
                accepts_response_payload=accepts,
                connection=index,
                sent_at=time.monotonic(),
            )
            with self._lock:
                self.envelopes.append(envelope)
            if connection.send_json(message):
                return envelope
            with self._lock:  # closed meanwhile: try the next connection
                self.envelopes.remove(envelope)

    # -- faults

    def disconnect(self, connection: int | None = None, reason: str = "refresh_requested") -> int:
        """Ask the client to move to a new connection, as Slack does every few hours; no more
        envelopes go over this one. Returns the connection's number."""
        target = self._connection(connection)
        with self._lock:
            target.state = "retiring"
        target.send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}
        )
        return target.index

    def drop(self, connection: int | None = None) -> int:
        """The network between the bot and Slack fails: from now on the connection neither
        sends nor answers anything, and it is not closed. Returns the connection's number."""
        target = self._connection(connection)
        with target._send_lock, self._lock:
            target.state = "dropped"
        return target.index

    def hang_up(self, connection: int | None = None) -> int:
        """Close the TCP connection without a WebSocket close frame (a FIN only), as a
        restarting proxy might. Returns the connection's number."""
        target = self._connection(connection)
        with target._send_lock, self._lock:
            target.state = "hung_up"
        with contextlib.suppress(OSError):
            target.sock.shutdown(socket.SHUT_WR)
        return target.index

    # -- checks

    def unacked(self) -> list[Envelope]:
        with self._lock:
            return [e for e in self.envelopes if e.ack is None]

    def assert_no_violations(self) -> None:
        with self._lock:
            problems = list(self.violations)
        if problems:
            raise AssertionError("Socket Mode contract violations:\n  " + "\n  ".join(problems))

    # -- internals

    def _connection(self, index: int | None = None) -> _Connection:
        with self._lock:
            if index is None:
                open_ = [c for c in self._connections if c.state == "open"]
                if not open_:
                    raise AssertionError("no open Socket Mode connection")
                return open_[-1]
            return next(c for c in self._connections if c.index == index)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            connection = _Connection(self, next(self._numbers), sock)
            with self._lock:
                self._connections.append(connection)
            connection.thread.start()

    def _redeem(self, ticket: str) -> bool:
        with self._lock:
            if ticket not in self._tickets:
                return False
            self._tickets.discard(ticket)
            return True

    def _greet(self, connection: _Connection) -> None:
        with self._lock:
            connection.state = "open"
            live = sum(1 for c in self._connections if c.state in ("open", "retiring"))
        connection.send_json(
            {
                "type": "hello",
                "num_connections": live,
                "debug_info": {
                    "host": "applink-fake-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        with self._lock:
            self._lock.notify_all()

    def _violation(self, problem: str) -> None:
        with self._lock:
            self.violations.append(problem)

    def _received(self, connection: _Connection, opcode: int, data: bytes) -> None:
        """An ack, the only message a Socket Mode client sends."""
        now = time.monotonic()
        try:
            message = json.loads(data.decode()) if opcode == _TEXT else None
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("envelope_id"), str):
            self._violation(f"connection {connection.index}: not an ack: {data[:200]!r}")
            return
        with self._lock:
            envelope = next(
                (e for e in self.envelopes if e.envelope_id == message["envelope_id"]), None
            )
            if envelope is None:
                self.violations.append(f"ack for unknown envelope {message['envelope_id']}")
                return
            if envelope.ack is not None:
                self.violations.append(f"envelope {envelope.envelope_id} acked twice")
                return
            payload = message.get("payload")
            if payload is not None and not envelope.accepts_response_payload:
                self.violations.append(
                    f"{envelope.type} envelope {envelope.envelope_id} accepts no response "
                    f"payload, but its ack carried {payload!r}"
                )
            envelope.ack = Ack(
                envelope_id=envelope.envelope_id,
                payload=payload,
                seconds=now - envelope.sent_at,
                connection=connection.index,
            )
            self.acks.append(envelope.ack)
        envelope._acked.set()
