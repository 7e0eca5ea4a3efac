"""The admin socket: a Unix stream socket speaking JSON lines, served on the engine's own event loop.

``AdminServer(path, control)`` serves an :class:`~engine.control.EngineControl` (the ``TradingEngine``);
``engine ctl`` (:mod:`engine.ctl`) is its client. ``await start()`` binds, ``await close()`` unbinds.

Protocol (DESIGN.md, "User-facing contracts"), one JSON object per line each way (``\\n``-terminated,
UTF-8)::

    -> {"id": 1, "cmd": "pause", "args": {}}
    <- {"id": 1, "ok": true, "result": {...}}
    <- {"id": 1, "ok": false, "error": {"code": "invalid_transition", "message": "..."}}

``id`` is echoed; it may be a string, an integer or null (omitted = null). It is null in the reply when
the line could not be parsed far enough to read it. ``args`` may be omitted or null (= ``{}``); unknown
argument names are refused (``bad_argument``), as the config refuses unknown keys.

Commands and their arguments (all optional unless marked):

=================  ====================================================================================
``status``         -
``pause``          ``reason`` (str)
``resume``         ``reason`` (str)
``emergency-stop`` ``flatten`` (bool, default false), ``reason`` (str)
``reset``          ``reason`` (str)
``stop``           ``reason`` (str)
``positions``      -
``orders``         -
``book``           ``symbol`` (str, required), ``depth`` (int 1..1000, default 10), ``venue`` (str)
``risk``           -
``limits``         no args: get every limit. ``{"set": {"key": K, "value": V}}``: set one limit, where K
                   is the limit's name and V its new value as a STRING (decimal strings for money; the
                   engine validates it). That one shape only; ``engine ctl limits set K V`` sends it.
``cancel-all``     ``symbol`` (str or null: every symbol)
``metrics``        -
``subscribe``      - ; after the ok reply the connection carries only ``{"event": ...}`` lines, until the
                   client disconnects (anything the client sends after ``subscribe`` is ignored)
=================  ====================================================================================

Error codes of the server itself: ``bad_json`` (not JSON / not UTF-8), ``bad_request`` (not an object,
bad ``id``), ``unknown_command``, ``bad_argument``, ``line_too_long``, ``incomplete_line``,
``too_many_clients``, ``internal`` (an unexpected exception in the engine: logged with its traceback,
the server keeps serving). Refusals of the engine (:class:`~engine.control.ControlError`) carry the
engine's own code (``invalid_transition``, ``unknown_symbol``, ``unknown_limit``...).

Decisions:

* **Ordering.** Every command, from every client, runs under one FIFO ``asyncio.Lock``: commands execute
  one at a time, in the order their lines were read off the sockets (the lock queues waiters first come,
  first served), and each reply is written after its action returned. A client sends its next command's
  reply only after the previous one: per connection, lines are handled strictly in sequence.
* **Oversized lines** (more than ``max_line`` bytes without a newline, 64 KiB by default): an immediate
  ``line_too_long`` error reply (id null), then everything up to the next newline is discarded, and the
  connection stays usable. Memory per connection stays bounded by ``max_line``.
* **Half-written lines**: a line cut off by the client's end of stream is never executed (a truncated
  ``emergency-stop`` must not act); the client gets an ``incomplete_line`` error (best effort) and the
  connection is closed. A client that vanishes after a complete line: the command runs, the reply is
  dropped.
* **Socket directory**: created 0700 if missing. If it exists, it must be a directory owned by this
  user and must not be sticky (``/tmp``-like shared directories are refused: we would not chmod them);
  wider permissions than 0700 are then tightened to 0700 (logged). Anything else refuses to start with
  :class:`AdminSocketError`. The socket file is chmod 0600 right after bind (the 0700 directory closes
  the window in between).
* **Existing socket path**: a non-socket file there is refused (never deleted). A socket that refuses
  connections is a stale one left by a crash and is removed. A socket that accepts connections is a live
  engine (or something else listening): start is refused, naming the path (and the other engine's state
  when it answered ``status``).
* **Observation**: ``observe(cmd, ns)``, when given, is called with each command's service time (line
  parsed -> reply handed to the socket), e.g. ``Metrics.observe_admin_latency``.
* **Secrets**: every reply and event line is scrubbed of the configured ``secrets`` (each occurrence
  replaced with ``***``), and a :class:`~engine.config.Secret` value is serialised as ``***``.

The server adds one socket read, one JSON parse, one dict lookup and one write per command; under a
flooded loop the admin round trip is bounded by the longest synchronous batch the hot path runs between
two awaits (see ``tests/admin/test_admin_socket.py::test_status_when_loop_flooded_then_served_fast``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson

from engine.config import Secret
from engine.control import JSON, ControlError, EngineControl
from engine.errors import EngineError

__all__ = [
    "COMMANDS",
    "DEFAULT_MAX_LINE",
    "AdminServer",
    "AdminSocketError",
    "LineSplitter",
    "Oversized",
    "probe_socket",
]

log = logging.getLogger("engine.admin")

DEFAULT_MAX_LINE: Final = 65536
_MAX_DEPTH: Final = 1000
_PROBE_TIMEOUT_S: Final = 1.0
_READ_CHUNK: Final = 65536
_REDACTED: Final = b"***"


class AdminSocketError(EngineError):
    """The admin socket cannot be started (path, directory or another live engine)."""


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- line framing (no I/O) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the limit was seen (reported once per line; the rest of it is discarded)."""

    limit: int


class LineSplitter:
    """Splits a byte stream into lines of at most ``max_line`` bytes (newline excluded).

    ``feed(data)`` yields each complete line (``bytes``, without the newline, a trailing ``\\r``
    stripped) and, for a line that grows past the limit, one :class:`Oversized` marker; the rest of that
    line, up to and including its newline, is discarded. ``pending`` is the unterminated tail.
    """

    __slots__ = ("_buf", "_discarding", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be positive, not {max_line}")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> bool:
        """True when an unterminated (and not discarded) line is buffered."""
        return bool(self._buf) and not self._discarding

    def feed(self, data: bytes) -> Iterator[bytes | Oversized]:
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            if self._discarding:
                if nl < 0:
                    return
                self._discarding = False
                start = nl + 1
                continue
            end = n if nl < 0 else nl
            if len(self._buf) + (end - start) > self.max_line:
                self._buf.clear()
                self._discarding = True
                yield Oversized(self.max_line)
                continue
            if nl < 0:
                self._buf += data[start:]
                return
            if self._buf:
                self._buf += data[start:nl]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = data[start:nl]
            start = nl + 1
            yield line[:-1] if line.endswith(b"\r") else line


# ---- request validation (no I/O) ----------------------------------------------------------------------

_Handler = Callable[[EngineControl, dict[str, Any]], Awaitable[Any]]


def _reason(args: dict[str, Any]) -> str:
    value = args.get("reason", "operator")
    if not isinstance(value, str) or not value:
        raise _BadRequest("bad_argument", "'reason' must be a non-empty string")
    return value


def _no_args(*allowed: str) -> Callable[[dict[str, Any]], None]:
    def check(args: dict[str, Any]) -> None:
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            expected = ", ".join(allowed) if allowed else "none"
            raise _BadRequest(
                "bad_argument", f"unknown argument(s) {', '.join(unknown)} (expected: {expected})"
            )

    return check


async def _status(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.status()


async def _pause(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.pause(reason=_reason(a))


async def _resume(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.resume(reason=_reason(a))


async def _emergency_stop(c: EngineControl, a: dict[str, Any]) -> Any:
    flatten = a.get("flatten", False)
    if not isinstance(flatten, bool):
        raise _BadRequest("bad_argument", "'flatten' must be true or false")
    return await c.emergency_stop(flatten=flatten, reason=_reason(a))


async def _reset(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.reset(reason=_reason(a))


async def _stop(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.stop(reason=_reason(a))


async def _positions(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.positions()


async def _orders(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.orders()


def _symbol_arg(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 40:
        raise _BadRequest("bad_argument", f"'{name}' must be a symbol string such as \"BTCUSDT\"")
    return value.upper()


async def _book(c: EngineControl, a: dict[str, Any]) -> Any:
    if "symbol" not in a:
        raise _BadRequest("bad_argument", "'symbol' is required")
    symbol = _symbol_arg(a["symbol"], "symbol")
    depth = a.get("depth", 10)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= _MAX_DEPTH:
        raise _BadRequest("bad_argument", f"'depth' must be an integer from 1 to {_MAX_DEPTH}")
    venue = a.get("venue")
    if venue is not None and (not isinstance(venue, str) or not venue):
        raise _BadRequest("bad_argument", "'venue' must be a venue name such as \"binance\"")
    return await c.book(symbol, depth=depth, venue=venue)


async def _risk(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.risk()


async def _limits(c: EngineControl, a: dict[str, Any]) -> Any:
    if "set" not in a:
        return await c.limits()
    spec = a["set"]
    if not isinstance(spec, dict) or set(spec) != {"key", "value"}:
        raise _BadRequest("bad_argument", '\'set\' must be an object {"key": NAME, "value": VALUE}')
    key, value = spec["key"], spec["value"]
    if not isinstance(key, str) or not key:
        raise _BadRequest("bad_argument", "'set.key' must be a limit name (string)")
    if not isinstance(value, str):
        raise _BadRequest("bad_argument", "'set.value' must be a string (decimal strings for money)")
    return await c.set_limit(key, value)


async def _cancel_all(c: EngineControl, a: dict[str, Any]) -> Any:
    symbol = a.get("symbol")
    return await c.cancel_all(None if symbol is None else _symbol_arg(symbol, "symbol"))


async def _metrics(c: EngineControl, a: dict[str, Any]) -> Any:
    return await c.metrics()


@dataclass(frozen=True, slots=True)
class _Command:
    handler: _Handler | None  # None: subscribe (handled by the connection)
    check: Callable[[dict[str, Any]], None]


_REASON_ONLY = _no_args("reason")
_NONE = _no_args()

#: Every command the socket accepts, with its argument check.
COMMANDS: Final[dict[str, _Command]] = {
    "status": _Command(_status, _NONE),
    "pause": _Command(_pause, _REASON_ONLY),
    "resume": _Command(_resume, _REASON_ONLY),
    "emergency-stop": _Command(_emergency_stop, _no_args("flatten", "reason")),
    "reset": _Command(_reset, _REASON_ONLY),
    "stop": _Command(_stop, _REASON_ONLY),
    "positions": _Command(_positions, _NONE),
    "orders": _Command(_orders, _NONE),
    "book": _Command(_book, _no_args("symbol", "depth", "venue")),
    "risk": _Command(_risk, _NONE),
    "limits": _Command(_limits, _no_args("set")),
    "cancel-all": _Command(_cancel_all, _no_args("symbol")),
    "metrics": _Command(_metrics, _NONE),
    "subscribe": _Command(None, _NONE),
}


@dataclass(frozen=True, slots=True)
class _Request:
    id: str | int | None
    cmd: str
    command: _Command
    args: dict[str, Any]


def _parse(line: bytes) -> _Request:
    """A request from one line, or :class:`_BadRequest` (whose id, when readable, is in ``.args``)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest("bad_json", f"not a JSON line: {exc}") from None
    if not isinstance(doc, dict):
        raise _BadRequest("bad_request", f"a request is a JSON object, not {type(doc).__name__}")
    rid = doc.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise _BadRequest("bad_request", "'id' must be a string, an integer or null")
    return _RequestParser(rid).finish(doc)


class _RequestParser:
    __slots__ = ("rid",)

    def __init__(self, rid: str | int | None) -> None:
        self.rid = rid

    def finish(self, doc: dict[str, Any]) -> _Request:
        try:
            cmd = doc.get("cmd")
            if not isinstance(cmd, str):
                raise _BadRequest("bad_request", "'cmd' must be a command name (string)")
            command = COMMANDS.get(cmd)
            if command is None:
                raise _BadRequest("unknown_command", f"unknown command {cmd[:64]!r}")
            extra = sorted(set(doc) - {"id", "cmd", "args"})
            if extra:
                raise _BadRequest("bad_request", f"unknown request field(s) {', '.join(extra)[:200]}")
            args = doc.get("args")
            if args is None:
                args = {}
            elif not isinstance(args, dict):
                raise _BadRequest("bad_argument", "'args' must be a JSON object")
            command.check(args)
            return _Request(self.rid, cmd, command, args)
        except _BadRequest as exc:
            raise _IdentifiedBadRequest(self.rid, exc) from None


class _IdentifiedBadRequest(Exception):
    def __init__(self, rid: str | int | None, err: _BadRequest) -> None:
        super().__init__(err.message)
        self.rid = rid
        self.err = err


# ---- serialisation ------------------------------------------------------------------------------------


def _default(obj: object) -> object:
    if isinstance(obj, Secret):
        return "***"
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


class _Encoder:
    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret containing another is replaced whole
        found = {s.encode() for s in secrets if s}
        escaped = {orjson.dumps(s.decode())[1:-1] for s in found}
        self._secrets = tuple(sorted(found | escaped, key=len, reverse=True))

    def line(self, doc: JSON) -> bytes:
        data = orjson.dumps(doc, default=_default)
        for s in self._secrets:
            if s in data:
                data = data.replace(s, _REDACTED)
        return data + b"\n"


def _ok(rid: str | int | None, result: Any) -> JSON:
    return {"id": rid, "ok": True, "result": result}


def _error(rid: str | int | None, code: str, message: str) -> JSON:
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


# ---- probing ------------------------------------------------------------------------------------------


async def probe_socket(path: Path, *, timeout_s: float = _PROBE_TIMEOUT_S) -> tuple[bool, JSON | None]:
    """Whether something accepts connections on ``path`` and, if it answered ``status``, its reply."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout_s)
    except (ConnectionRefusedError, FileNotFoundError):
        return False, None
    except (OSError, TimeoutError):
        # a socket we cannot connect to for another reason (permissions, backlog full, time-out):
        # something may be alive there; do not delete it
        return True, None
    try:
        writer.write(b'{"id": "probe", "cmd": "status"}\n')
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        reply = orjson.loads(line) if line else None
        return True, reply if isinstance(reply, dict) else None
    except (OSError, TimeoutError, orjson.JSONDecodeError):
        return True, None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# ---- the server ---------------------------------------------------------------------------------------


class AdminServer:
    """The admin socket of one engine. See the module docstring for the protocol and its decisions."""

    def __init__(
        self,
        path: str | Path,
        control: EngineControl,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_clients: int = 64,
        secrets: Iterable[str] = (),
        observe: Callable[[str, int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.control = control
        self.max_line = max_line
        self.max_clients = max_clients
        self._encoder = _Encoder(secrets)
        self._observe = observe
        self._lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._conns: set[_Conn] = set()
        self._closing = False
        self.commands_served = 0
        self.errors_replied = 0
        self.internal_errors = 0

    @property
    def clients(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        if self._server is not None:
            raise AdminSocketError(f"admin socket {self.path} is already started")
        _prepare_directory(self.path.parent)
        await self._clear_path()
        self._server = await asyncio.start_unix_server(self._on_client, path=str(self.path))
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        log.info("admin_started path=%s", self.path, extra={"path": str(self.path)})

    async def close(self, *, grace_s: float = 2.0) -> None:
        """Stop accepting, close idle connections and subscriptions at once, let a command in progress
        finish and write its reply (up to ``grace_s``; then it is cancelled), remove the socket file.
        Safe to call from inside a command (e.g. the engine's ``stop``): that connection is left to end
        after its reply."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        server.close()
        current = asyncio.current_task()
        tasks = []
        for conn in list(self._conns):
            if conn.task is current:
                continue
            if not conn.busy:
                conn.writer.close()
            tasks.append(conn.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._unlink_own_socket()
        log.info("admin_closed path=%s", self.path, extra={"path": str(self.path)})

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- start-up -----------------------------------------------------------------------------------

    async def _clear_path(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AdminSocketError(
                f"admin socket path {self.path} exists and is not a socket; not touching it"
            )
        alive, reply = await probe_socket(self.path)
        if alive:
            state = ""
            if reply is not None and reply.get("ok") and isinstance(reply.get("result"), dict):
                state = f" (state {reply['result'].get('state')!s})"
            raise AdminSocketError(
                f"another engine is live on admin socket {self.path}{state}; stop it first "
                "(engine ctl --socket PATH stop) or use another --admin-socket"
            )
        os.unlink(self.path)
        log.warning("admin_stale_socket_removed path=%s", self.path, extra={"path": str(self.path)})

    def _unlink_own_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if st.st_ino == self._inode and stat.S_ISSOCK(st.st_mode):
            os.unlink(self.path)

    # -- connections --------------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing or len(self._conns) >= self.max_clients:
            with contextlib.suppress(ConnectionError):
                await self._send(
                    writer, _error(None, "too_many_clients", f"at most {self.max_clients} clients")
                )
            await _close_writer(writer)
            return
        conn = _Conn(task, writer)
        self._conns.add(conn)
        try:
            await self._serve(reader, conn)
        except ConnectionError:
            log.debug("admin_client_gone")
        finally:
            self._conns.discard(conn)
            await _close_writer(writer)

    async def _serve(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        writer = conn.writer
        splitter = LineSplitter(self.max_line)
        while not self._closing:
            data = await reader.read(_READ_CHUNK)
            if not data:
                if splitter.pending:
                    self.errors_replied += 1
                    await self._send(
                        writer,
                        _error(None, "incomplete_line", "stream ended inside a line; not run"),
                    )
                return
            for item in splitter.feed(data):
                if isinstance(item, Oversized):
                    self.errors_replied += 1
                    await self._send(
                        writer,
                        _error(None, "line_too_long", f"a line is at most {item.limit} bytes; discarded"),
                    )
                    continue
                if not item.strip():
                    continue
                conn.busy = True
                try:
                    subscribe_id = await self._handle(item, writer)
                finally:
                    conn.busy = False
                if subscribe_id is not _NOT_SUBSCRIBED:
                    await self._stream_events(reader, writer)
                    return
                if self._closing:
                    return

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> object:
        """Handle one line; returns the request id when it was a successful ``subscribe``."""
        try:
            req = _parse(line)
        except _IdentifiedBadRequest as exc:
            self.errors_replied += 1
            await self._send(writer, _error(exc.rid, exc.err.code, exc.err.message))
            return _NOT_SUBSCRIBED
        except _BadRequest as exc:
            self.errors_replied += 1
            await self._send(writer, _error(None, exc.code, exc.message))
            return _NOT_SUBSCRIBED
        if req.command.handler is None:
            await self._send(writer, _ok(req.id, {"subscribed": True}))
            return req.id
        t0 = time.perf_counter_ns()
        writer.write(await self._execute(req))
        if self._observe is not None:
            self._observe(req.cmd, time.perf_counter_ns() - t0)
        await writer.drain()
        return _NOT_SUBSCRIBED

    async def _execute(self, req: _Request) -> bytes:
        """Run one command under the FIFO lock; the encoded reply line."""
        assert req.command.handler is not None
        async with self._lock:
            try:
                result = await req.command.handler(self.control, req.args)
            except _BadRequest as exc:
                self.errors_replied += 1
                return self._encoder.line(_error(req.id, exc.code, exc.message))
            except ControlError as exc:
                self.errors_replied += 1
                return self._encoder.line(_error(req.id, exc.code, exc.message))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.internal_errors += 1
                log.exception("admin_internal_error cmd=%s", req.cmd, extra={"cmd": req.cmd})
                return self._encoder.line(_error(req.id, "internal", f"{type(exc).__name__}: {exc}"))
            self.commands_served += 1
        try:
            return self._encoder.line(_ok(req.id, result))
        except TypeError as exc:
            self.internal_errors += 1
            log.error("admin_bad_result cmd=%s error=%s", req.cmd, exc, extra={"cmd": req.cmd})
            return self._encoder.line(
                _error(req.id, "internal", f"the engine's {req.cmd} result is not JSON: {exc}")
            )

    async def _stream_events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward the engine's events until the client disconnects (its input is read and ignored)."""

        async def watch_eof() -> None:
            while await reader.read(_READ_CHUNK):
                pass

        eof = asyncio.create_task(watch_eof())
        events = self.control.subscribe()
        forward = asyncio.create_task(self._forward(events, writer))
        try:
            done, _ = await asyncio.wait({eof, forward}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    if isinstance(exc, (ConnectionError, BrokenPipeError)):
                        continue
                    log.error("admin_subscribe_failed error=%s", exc, extra={"error": repr(exc)})
        finally:
            for task in (eof, forward):
                task.cancel()
            for task in (eof, forward):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _forward(self, events: Any, writer: asyncio.StreamWriter) -> None:
        async for event in events:
            try:
                data = self._encoder.line(event)
            except TypeError as exc:
                log.error("admin_bad_event error=%s", exc, extra={"error": str(exc)})
                continue
            writer.write(data)
            await writer.drain()

    async def _send(self, writer: asyncio.StreamWriter, doc: JSON) -> None:
        writer.write(self._encoder.line(doc))
        await writer.drain()


_NOT_SUBSCRIBED: Final = object()


@dataclass(eq=False, slots=True)
class _Conn:
    task: asyncio.Task[None]
    writer: asyncio.StreamWriter
    busy: bool = False


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


def _prepare_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or check an existing one (see the module docstring)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise AdminSocketError(f"cannot create admin socket directory {directory}: {exc.strerror}") from None
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise AdminSocketError(f"admin socket directory {directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise AdminSocketError(
            f"admin socket directory {directory} belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.geteuid()}); use a directory of your own"
        )
    if st.st_mode & stat.S_ISVTX:
        raise AdminSocketError(
            f"admin socket directory {directory} is a shared sticky directory (like /tmp); "
            "put the socket in a directory of its own"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        os.chmod(directory, 0o700)
        log.warning(
            "admin_directory_tightened path=%s from=%o to=700",
            directory,
            mode,
            extra={"path": str(directory), "mode_was": f"{mode:o}"},
        )
