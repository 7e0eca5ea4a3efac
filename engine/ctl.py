"""``engine ctl``: the admin socket's client (tables, ``--json``, ``subscribe``, ``watch``).

``engine ctl [--socket PATH] [--config PATH] [--timeout S] COMMAND [ARGS] [--json]``::

    status | pause | resume | emergency-stop [--flatten] | reset | stop | positions | orders
    book SYMBOL [--depth N] [--venue V] | risk | limits [set KEY VALUE] | cancel-all [SYMBOL]
    metrics | subscribe | watch [--refresh S]

The socket path is ``--socket``, else the config's ``[engine] admin_socket`` (``--config``, default
``config/paper.toml``), else ``var/engine.sock``. Default output is human-readable tables (rich; plain
text when stdout is not a terminal); ``--json`` prints the reply's ``result`` as JSON (DESIGN.md result
shapes). ``subscribe`` prints each event as one JSON line until Ctrl-C or the engine closes the stream;
``watch`` is a live view of state, books, positions, orders and recent events (q or Ctrl-C quits).

Exit codes: 0 success; 1 the engine refused the command (``error: CODE: MESSAGE`` on stderr); 2 usage or
config error; 3 no engine answers on the socket, or it went away or timed out (the message names the
socket path).

:class:`AdminClient` is a small blocking client (no event loop: ``engine ctl`` is a short-lived
process); ``limits set KEY VALUE`` sends ``{"cmd": "limits", "args": {"set": {"key": KEY, "value":
VALUE}}}`` with VALUE as a string.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = [
    "EXIT_NO_ENGINE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "AdminClient",
    "CtlError",
    "NoEngine",
    "add_ctl_parser",
    "default_socket_path",
    "run_ctl",
]

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_ENGINE: Final = 3

_FALLBACK_SOCKET: Final = Path("var/engine.sock")
_MAX_REPLY: Final = 64 * 1024 * 1024

JSON = dict[str, Any]


class CtlError(Exception):
    """The engine replied ``ok: false`` (``code``/``message`` are the reply's)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NoEngine(CtlError):
    """No engine answers on the socket (missing, refused, went away, timed out)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__("no_engine", f"no engine answers on admin socket {path} ({why})")
        self.path = path


# ---- the client ---------------------------------------------------------------------------------------


class AdminClient:
    """A blocking JSON-lines client of one admin socket connection."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_id = 1

    def connect(self) -> AdminClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise NoEngine(self.path, "no socket file there; is the engine running?") from None
        except ConnectionRefusedError:
            sock.close()
            raise NoEngine(self.path, "connection refused; a stale socket of a stopped engine?") from None
        except PermissionError:
            sock.close()
            raise NoEngine(self.path, "permission denied; run as the engine's user") from None
        except TimeoutError:
            sock.close()
            raise NoEngine(self.path, f"connect timed out after {self.timeout_s:g} s") from None
        except OSError as exc:
            sock.close()
            raise NoEngine(self.path, exc.strerror or str(exc)) from None
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> AdminClient:
        return self.connect() if self._sock is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def socket(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("AdminClient is not connected")
        return self._sock

    def request(self, cmd: str, args: JSON | None = None) -> Any:
        """Send one command; its ``result``, or :class:`CtlError` / :class:`NoEngine`."""
        rid = self._next_id
        self._next_id += 1
        line = json.dumps({"id": rid, "cmd": cmd, "args": args or {}}, separators=(",", ":"))
        try:
            self.socket.sendall(line.encode() + b"\n")
        except OSError as exc:
            raise NoEngine(self.path, f"the engine went away: {exc.strerror or exc}") from None
        reply = self.read_line()
        if reply is None:
            raise NoEngine(self.path, f"the engine closed the connection before answering {cmd}")
        if reply.get("id") != rid:
            raise CtlError("protocol", f"reply id {reply.get('id')!r} does not match request id {rid}")
        if reply.get("ok") is True:
            return reply.get("result")
        error = reply.get("error")
        if not isinstance(error, dict):
            raise CtlError("protocol", f"malformed reply: {reply!r}")
        raise CtlError(str(error.get("code", "error")), str(error.get("message", "")))

    def read_line(self) -> JSON | None:
        """The next JSON line from the engine (None at end of stream)."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                try:
                    doc = json.loads(raw)
                except ValueError:
                    raise CtlError(
                        "protocol", f"the engine sent a line that is not JSON: {raw[:200]!r}"
                    ) from None
                if not isinstance(doc, dict):
                    raise CtlError("protocol", f"the engine sent a non-object line: {raw[:200]!r}")
                return doc
            if len(self._buf) > _MAX_REPLY:
                raise CtlError("protocol", "reply larger than 64 MiB")
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                raise NoEngine(self.path, f"no reply within {self.timeout_s:g} s") from None
            except OSError as exc:
                raise NoEngine(self.path, f"the engine went away: {exc.strerror or exc}") from None
            if not data:
                return None
            self._buf += data

    def has_buffered_line(self) -> bool:
        return b"\n" in self._buf

    def events(self) -> Iterator[JSON]:
        """Subscribe and yield events until the engine closes the stream (blocks without a time-out)."""
        self.request("subscribe")
        self.socket.settimeout(None)
        while True:
            event = self.read_line()
            if event is None:
                return
            yield event


# ---- argument parsing ---------------------------------------------------------------------------------


def _common(suppress: bool) -> argparse.ArgumentParser:
    """``--json``/``--socket``/``--config``/``--timeout``, accepted before or after the command."""
    p = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the reply's result as JSON",
    )
    p.add_argument("--socket", metavar="PATH", default=default, help="admin socket path")
    p.add_argument(
        "--config", metavar="PATH", default=default, help="config file to read the socket path from"
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=argparse.SUPPRESS if suppress else 30.0,
        help="seconds to wait for a reply (default 30)",
    )
    return p


def add_ctl_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``ctl`` and its commands to the ``engine`` command's subparsers."""
    ctl = commands.add_parser(
        "ctl",
        parents=[_common(False)],
        help="talk to a running engine over its admin socket",
        description=__doc__.split("\n\n", 1)[1].split("\n\n:class:", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    common = [_common(True)]

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=common, help=help_text)
        return parser

    add("status", "state, uptime, venues and book health, equity, daily PnL")
    add("pause", "deny new entries (exits and cancels still allowed)")
    add("resume", "paused -> running")
    es = add("emergency-stop", "cancel every open order (and flatten with --flatten); latches")
    es.add_argument("--flatten", action="store_true", help="also close every position (reduce-only market)")
    add("reset", "leave emergency_stopped (lands in paused)")
    add("stop", "stop the engine gracefully")
    add("positions", "open positions")
    add("orders", "open orders")
    book = add("book", "a symbol's order book")
    book.add_argument("symbol", metavar="SYMBOL")
    book.add_argument("--depth", type=int, default=10, metavar="N", help="levels per side (default 10)")
    book.add_argument("--venue", metavar="VENUE", help="venue, when the symbol trades on several")
    add("risk", "risk usage, exposure, drawdown, trips")
    limits = add("limits", "risk limits; `limits set KEY VALUE` changes one")
    limits.add_argument("action", nargs="?", choices=["set"], help="set one limit")
    limits.add_argument("key", nargs="?", metavar="KEY")
    limits.add_argument("value", nargs="?", metavar="VALUE")
    ca = add("cancel-all", "cancel every open order (of one symbol)")
    ca.add_argument("symbol", nargs="?", metavar="SYMBOL")
    add("metrics", "counters and gauges")
    add("subscribe", "print events (state changes, orders, fills, denials, alerts) as JSON lines")
    watch = add("watch", "live view of state, books, positions, orders and events (q or Ctrl-C quits)")
    watch.add_argument("--refresh", type=float, default=0.5, metavar="S", help="seconds between refreshes")
    watch.add_argument("--frames", type=int, default=0, metavar="N", help=argparse.SUPPRESS)
    return ctl  # type: ignore[no-any-return]


def default_socket_path(config: str | None) -> Path:
    """``[engine] admin_socket`` of ``config`` (default config when None), else ``var/engine.sock``.

    A ``config`` given explicitly that cannot be loaded raises ConfigError; the default config falls back
    silently (``engine ctl`` must work without it)."""
    from engine.config import load_config
    from engine.errors import ConfigError

    try:
        return load_config(config).engine.admin_socket
    except ConfigError:
        if config is not None:
            raise
        return _FALLBACK_SOCKET


# ---- running a command --------------------------------------------------------------------------------


def _request_args(args: argparse.Namespace) -> tuple[JSON, str | None]:
    """The socket args of a command, or a usage error message."""
    cmd: str = args.ctl_command
    if cmd == "emergency-stop":
        return {"flatten": bool(args.flatten)}, None
    if cmd == "book":
        if args.depth < 1:
            return {}, "--depth must be at least 1"
        out: JSON = {"symbol": args.symbol.upper(), "depth": args.depth}
        if args.venue:
            out["venue"] = args.venue
        return out, None
    if cmd == "limits":
        if args.action is None:
            if args.key is not None:
                return {}, "usage: engine ctl limits [set KEY VALUE]"
            return {}, None
        if args.key is None or args.value is None:
            return {}, "usage: engine ctl limits set KEY VALUE"
        return {"set": {"key": args.key, "value": args.value}}, None
    if cmd == "cancel-all":
        return ({"symbol": args.symbol.upper()} if args.symbol else {}), None
    return {}, None


def run_ctl(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``engine ctl`` command; the process exit code."""
    stdout = sys.stdout if out is None else out
    stderr = sys.stderr if err is None else err
    cmd: str = args.ctl_command
    as_json = bool(getattr(args, "json", False))
    try:
        path = Path(args.socket) if args.socket else default_socket_path(args.config)
    except Exception as exc:  # ConfigError: the message names the file, key and reason
        print(f"engine ctl: {exc}", file=stderr)
        return EXIT_USAGE
    request_args, usage = _request_args(args)
    if usage is not None:
        print(f"engine ctl: {usage}", file=stderr)
        return EXIT_USAGE
    try:
        if cmd == "subscribe":
            return _subscribe(path, stdout)
        if cmd == "watch":
            return _watch(path, refresh_s=args.refresh, frames=args.frames, timeout_s=args.timeout)
        with AdminClient(path, timeout_s=args.timeout) as client:
            result = client.request(cmd, request_args)
    except NoEngine as exc:
        print(f"engine ctl: {exc.message}", file=stderr)
        return EXIT_NO_ENGINE
    except CtlError as exc:
        print(f"error: {exc.code}: {exc.message}", file=stderr)
        return EXIT_REFUSED
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False), file=stdout)
    else:
        console = _console(stdout)
        for renderable in render(cmd, result):
            console.print(renderable)
    return EXIT_OK


def _subscribe(path: Path, stdout: TextIO) -> int:
    with AdminClient(path) as client:
        try:
            for event in client.events():
                print(json.dumps(event, ensure_ascii=False), file=stdout, flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


# ---- tables -------------------------------------------------------------------------------------------


def _console(stream: TextIO) -> Console:
    from rich.console import Console

    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _flatten(doc: JSON, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def kv_table(doc: JSON, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in _flatten(doc):
        table.add_row(key, _cell(value))
    return table


def list_table(rows: Sequence[Any], columns: Sequence[str] = (), title: str | None = None) -> Table:
    from rich.table import Table

    cols = list(columns)
    for row in rows:
        if isinstance(row, dict):
            cols.extend(k for k in row if k not in cols)
    table = Table(title=title, title_justify="left")
    numeric = {"price", "qty", "filled_qty", "entry_price", "unrealized_pnl", "mark_price", "notional"}
    for col in cols or ["value"]:
        table.add_column(col, justify="right" if col in numeric else "left")
    for row in rows:
        if isinstance(row, dict):
            table.add_row(*(_cell(row.get(c)) for c in cols))
        else:
            table.add_row(_cell(row))
    return table


def _venue_rows(venues: object) -> list[tuple[str, object, str]]:
    """(venue, connected, "SYMBOL health, ...") from the shapes ``status.venues`` may take."""
    items: list[tuple[str, Any]] = []
    if isinstance(venues, dict):
        items = list(venues.items())
    elif isinstance(venues, list):
        items = [(str(v.get("venue") or v.get("name") or "?"), v) for v in venues if isinstance(v, dict)]
    rows = []
    for name, info in items:
        if not isinstance(info, dict):
            rows.append((name, info, ""))
            continue
        books = info.get("books", info.get("symbols", info.get("health", {})))
        parts = []
        if isinstance(books, dict):
            for symbol, health in books.items():
                h = health.get("health", health) if isinstance(health, dict) else health
                parts.append(f"{symbol} {_cell(h)}")
        elif isinstance(books, list):
            for b in books:
                if isinstance(b, dict):
                    parts.append(f"{b.get('symbol', '?')} {_cell(b.get('health'))}")
        rows.append((name, info.get("connected"), ", ".join(parts)))
    return rows


def status_renderables(result: JSON) -> list[RenderableType]:
    from rich.table import Table

    top = {k: v for k, v in result.items() if k != "venues"}
    out: list[RenderableType] = [kv_table(top, title="engine")]
    venues = Table(title="venues", title_justify="left")
    for col in ("venue", "connected", "books"):
        venues.add_column(col)
    for name, connected, books in _venue_rows(result.get("venues")):
        venues.add_row(name, _cell(connected), books)
    out.append(venues)
    return out


def book_table(result: JSON) -> Table:
    from rich.table import Table

    title = f"{result.get('venue', '')} {result.get('symbol', '')} ({_cell(result.get('health'))})".strip()
    table = Table(title=title, title_justify="left")
    for col in ("bid qty", "bid", "ask", "ask qty"):
        table.add_column(col, justify="right")
    bids = result.get("bids") or []
    asks = result.get("asks") or []
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else ["", ""]
        a = asks[i] if i < len(asks) else ["", ""]
        table.add_row(str(b[1]), str(b[0]), str(a[0]), str(a[1]))
    return table


_ORDER_COLS: Final = (
    "client_order_id",
    "venue",
    "symbol",
    "side",
    "type",
    "price",
    "qty",
    "filled_qty",
    "status",
)
_POSITION_COLS: Final = ("venue", "symbol", "side", "qty", "entry_price", "unrealized_pnl")


def render(cmd: str, result: Any) -> list[RenderableType]:
    """Rich renderables for a command's result."""
    if cmd == "status" and isinstance(result, dict):
        return status_renderables(result)
    if cmd == "book" and isinstance(result, dict):
        return [book_table(result)]
    if cmd == "orders" and isinstance(result, list):
        return [list_table(result, _ORDER_COLS, title=f"open orders ({len(result)})")]
    if cmd == "positions" and isinstance(result, list):
        return [list_table(result, _POSITION_COLS, title=f"positions ({len(result)})")]
    if isinstance(result, list):
        return [list_table(result, title=cmd)]
    if isinstance(result, dict):
        return [kv_table(result, title=cmd)]
    return [_cell(result)]


# ---- watch --------------------------------------------------------------------------------------------


class _Keys:
    """Single key presses from a terminal stdin (cbreak mode), restored on exit."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self._saved: Any = None

    def __enter__(self) -> _Keys:
        if sys.stdin.isatty():
            import termios
            import tty

            self.fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self) -> str:
        assert self.fd is not None
        return os.read(self.fd, 16).decode(errors="replace")


def _symbols_of(status: JSON) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    venues = status.get("venues")
    items: list[tuple[str, Any]] = []
    if isinstance(venues, dict):
        items = list(venues.items())
    elif isinstance(venues, list):
        items = [(str(v.get("venue") or v.get("name")), v) for v in venues if isinstance(v, dict)]
    for name, info in items:
        if not isinstance(info, dict):
            continue
        books = info.get("books", info.get("symbols", info.get("health", {})))
        if isinstance(books, dict):
            out.extend((name, s) for s in books)
        elif isinstance(books, list):
            out.extend((name, str(b.get("symbol"))) for b in books if isinstance(b, dict))
    return out


def _watch_frame(client: AdminClient, events: deque[JSON]) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    status = client.request("status")
    positions = client.request("positions")
    orders = client.request("orders")
    books: list[RenderableType] = []
    for venue, symbol in _symbols_of(status)[:4]:
        try:
            books.append(book_table(client.request("book", {"symbol": symbol, "depth": 5, "venue": venue})))
        except CtlError as exc:
            if isinstance(exc, NoEngine):
                raise
            books.append(f"{venue} {symbol}: {exc.code}: {exc.message}")
    grid = Table.grid(padding=(0, 2))
    grid.add_row(*(books or ["(no books)"]))
    ev = Table(title="recent events", title_justify="left", show_header=False)
    ev.add_column("event")
    for e in list(events)[-15:]:
        ev.add_row(json.dumps(e, ensure_ascii=False, separators=(",", ":"))[:180])
    title = f"engine {status.get('state')} ({status.get('mode')})  q or Ctrl-C quits"
    return Panel(
        Group(
            *status_renderables(status),
            grid,
            list_table(positions, _POSITION_COLS, title=f"positions ({len(positions)})"),
            list_table(orders, _ORDER_COLS, title=f"open orders ({len(orders)})"),
            ev,
        ),
        title=title,
    )


def _watch(path: Path, *, refresh_s: float, frames: int, timeout_s: float) -> int:
    from rich.live import Live

    events: deque[JSON] = deque(maxlen=50)
    with AdminClient(path, timeout_s=timeout_s) as client, AdminClient(path, timeout_s=timeout_s) as sub:
        sub.request("subscribe")
        sub.socket.settimeout(timeout_s)
        shown = 0
        try:
            with (
                _Keys() as keys,
                Live(_watch_frame(client, events), auto_refresh=False, console=_console(sys.stdout)) as live,
            ):
                shown = 1
                while frames <= 0 or shown < frames:
                    deadline = time.monotonic() + refresh_s
                    while (left := deadline - time.monotonic()) > 0:
                        fds: list[Any] = [sub.socket]
                        if keys.fd is not None:
                            fds.append(keys.fd)
                        ready, _, _ = select.select(fds, [], [], left)
                        if keys.fd is not None and keys.fd in ready and "q" in keys.read().lower():
                            return EXIT_OK
                        if sub.socket in ready or sub.has_buffered_line():
                            event = sub.read_line()
                            if event is None:
                                raise NoEngine(path, "the engine closed the event stream")
                            events.append(event)
                            while sub.has_buffered_line():
                                line = sub.read_line()
                                if line is not None:
                                    events.append(line)
                    live.update(_watch_frame(client, events), refresh=True)
                    shown += 1
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK
