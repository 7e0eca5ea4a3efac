"""Throughput clients of the local venue, each in its own process so that it never competes with the
venue's event loop for the GIL: a depth subscriber and a keep-alive order sender, both driven line by
line over stdin/stdout. Shared by the throughput tests (``tests/venue``) and ``benchmarks/bench_venue.py``.

Protocols (one line each way):

- subscriber: prints ``ready`` once connected; then for each line ``N`` it reads N frames and prints
  ``done``; an empty line or end of input ends it.
- order sender: for each line ``N`` it signs N IOC limit orders and prints ``ready``; the next line
  (``go``) sends them over its keep-alive connections and it prints ``<accepted> <seconds>``.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from types import TracebackType

__all__ = [
    "DEPTH_STREAMS",
    "ClientProcess",
    "DepthSubscriber",
    "OrderSender",
    "depth_stream_url",
]

#: 15 book streams: the diff, three partial depths and the book ticker of three symbols
DEPTH_STREAMS: tuple[str, ...] = tuple(
    f"{s}@{k}"
    for s in ("btcusdt", "ethusdt", "solusdt")
    for k in ("depth@100ms", "depth5", "depth10", "depth20", "bookTicker")
)

_SUBSCRIBER = r"""
import asyncio, sys, websockets

async def main(url):
    async with websockets.connect(url, max_queue=None, compression=None) as ws:
        print("ready", flush=True)
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line:
                return
            for _ in range(int(line)):
                await asyncio.wait_for(ws.recv(), 30)
            print("done", flush=True)

asyncio.run(main(sys.argv[1]))
"""

_ORDER_SENDER = r"""
import asyncio, hashlib, hmac, sys, time
import aiohttp

async def main(base, key, secret, symbol, price, conc):
    headers = {"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as http:
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line:
                return
            bodies = []
            for _ in range(int(line)):
                form = (f"symbol={symbol}&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.010&price={price}"
                        f"&timestamp={int(time.time() * 1000)}&recvWindow=60000")
                sig = hmac.new(secret.encode(), form.encode(), hashlib.sha256).hexdigest()
                bodies.append(form + "&signature=" + sig)
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            ok = 0

            async def worker(chunk):
                nonlocal ok
                for body in chunk:
                    async with http.post(base + "/fapi/v1/order", data=body, headers=headers) as resp:
                        await resp.read()
                        ok += resp.status == 200

            start = time.perf_counter()
            await asyncio.gather(*(worker(bodies[i::conc]) for i in range(conc)))
            print(ok, time.perf_counter() - start, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])))
"""


def depth_stream_url(ws_url: str, streams: tuple[str, ...] = DEPTH_STREAMS) -> str:
    """The combined ``/public/stream`` URL of ``streams`` on the venue at ``ws_url``."""
    return f"{ws_url}/public/stream?streams={'/'.join(streams)}"


class ClientProcess:
    """A Python script in a child process, spoken to one line at a time (blocking calls: from async
    code, run them with ``asyncio.to_thread`` so the venue's loop keeps serving)."""

    def __init__(self, script: str, *args: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="client-process-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the process exited

    def send(self, line: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def expect(self, timeout: float = 30.0) -> str:
        """The next line the process prints; raises if it exits or stays silent for ``timeout`` s."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"client process printed nothing for {timeout} s") from None
        if line is None:
            raise RuntimeError(f"client process exited with status {self._proc.wait()}")
        return line

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.write("\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # already gone: wait() below reports how it ended
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        self._reader.join(10)

    def __enter__(self) -> ClientProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DepthSubscriber(ClientProcess):
    """One WebSocket subscriber (``max_queue=None``: it reads as fast as frames arrive)."""

    def __init__(self, url: str, *, timeout: float = 20.0) -> None:
        super().__init__(_SUBSCRIBER, url)
        ready = self.expect(timeout)
        if ready != "ready":
            raise RuntimeError(f"subscriber did not connect: {ready!r}")

    def start_reading(self, frames: int) -> None:
        self.send(str(frames))

    def wait_done(self, timeout: float = 60.0) -> None:
        done = self.expect(timeout)
        if done != "done":
            raise RuntimeError(f"subscriber answered {done!r}")


class OrderSender(ClientProcess):
    """Signed Binance IOC limit BUY orders of 0.010 at ``price`` over ``connections`` keep-alive
    connections (price them below the touch: each is accepted and expires, nothing accumulates)."""

    def __init__(
        self, base_url: str, key: str, secret: str, *, symbol: str, price: str, connections: int = 16
    ) -> None:
        super().__init__(_ORDER_SENDER, base_url, key, secret, symbol, price, str(connections))

    def prepare(self, orders: int, timeout: float = 60.0) -> None:
        """Sign ``orders`` orders (not timed)."""
        self.send(str(orders))
        ready = self.expect(timeout)
        if ready != "ready":
            raise RuntimeError(f"order sender answered {ready!r}")

    def go(self, timeout: float = 120.0) -> tuple[int, float]:
        """Send the prepared orders: (accepted with HTTP 200, seconds the sender took)."""
        self.send("go")
        ok, elapsed = self.expect(timeout).split()
        return int(ok), float(elapsed)
