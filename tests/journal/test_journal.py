"""The journal: durability across kill -9, migrations, corruption detection, unhealthy on write failure,
backups, and every record type read back exactly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.errors import JournalCorrupt, JournalError
from engine.journal import MIGRATIONS, SCHEMA_VERSION, Journal, newest_backup
from engine.types import (
    EngineState,
    Fill,
    MarginMode,
    OrderType,
    Position,
    PositionSide,
    Side,
    TimeInForce,
    Venue,
)

D = Decimal


async def _intent(j: Journal, cid: str, *, qty: str = "0.001", price: str | None = "30000.1") -> None:
    await j.intent(
        client_order_id=cid,
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=D(qty),
        price=None if price is None else D(price),
        signal={"strategy": "t", "ema_fast": D("1.5")},
        decision={"approved": True, "qty": D(qty)},
    )


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    await j.start()
    yield j
    await j.close()


# ---- records -----------------------------------------------------------------------------------------


async def test_intent_when_committed_then_read_back_exactly_with_decimals_as_text(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    await j.start()
    await j.intent(
        client_order_id="c1",
        venue=Venue.BYBIT,
        symbol="ETHUSDT",
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        qty=D("0.10"),
        price=None,
        signal={"why": "cross", "px": D("1234.5000")},
        decision={"ok": True},
        tif=TimeInForce.IOC,
        reduce_only=True,
        position_side=PositionSide.SHORT,
        trigger_price=D("1200.00"),
    )
    await j.close()
    with sqlite3.connect(tmp_path / "j.db") as con:
        qty, typ = con.execute("SELECT qty, typeof(qty) FROM intents").fetchone()
    assert (qty, typ) == ("0.10", "text")
    j2 = Journal(tmp_path / "j.db")
    await j2.start()
    [i] = await j2.pending_intents()
    await j2.close()
    assert i.qty == D("0.10") and str(i.qty) == "0.10"
    assert i.trigger_price == D("1200.00") and i.price is None
    assert i.signal == {"why": "cross", "px": "1234.5000"}
    req = i.request()
    assert (req.tif, req.reduce_only, req.position_side, req.type) == (
        TimeInForce.IOC,
        True,
        PositionSide.SHORT,
        OrderType.STOP_MARKET,
    )


async def test_pending_intents_when_outcome_recorded_then_only_unanswered_listed(journal: Journal) -> None:
    for cid in ("a", "b", "c", "d"):
        await _intent(journal, cid)
    journal.outcome("a", "ack", {"venue_order_id": "1"})
    journal.outcome("b", "reject", {"reason": "precision"})
    journal.outcome("c", "fill", {"qty": D("0.001"), "final": True})
    assert [i.client_order_id for i in await journal.pending_intents()] == ["d"]
    # "a" is acked but not finished: recovery still tracks it
    assert [i.client_order_id for i in await journal.unfinished_intents()] == ["a", "d"]
    outs = await journal.outcomes("c")
    assert outs[0].data == {"qty": "0.001", "final": True}


async def test_outcome_when_kind_unknown_then_value_error(journal: Journal) -> None:
    with pytest.raises(ValueError, match="unknown outcome kind"):
        journal.outcome("a", "acked", {})


async def test_intent_when_client_id_duplicated_then_journal_error_and_others_written(
    journal: Journal,
) -> None:
    await _intent(journal, "dup")
    journal.decision({"n": 1})
    with pytest.raises(JournalError, match="duplicate intent"):
        await _intent(journal, "dup")
    journal.decision({"n": 2})
    assert [d["n"] for d in await journal.decisions()] == [1, 2]
    assert journal.healthy


async def test_records_when_every_kind_written_then_read_back(journal: Journal) -> None:
    fill = Fill(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        client_order_id="c1",
        venue_order_id="9",
        trade_id="t1",
        side=Side.BUY,
        position_side=PositionSide.BOTH,
        price=D("30000.10"),
        qty=D("0.002"),
        fee=D("0.01200004"),
        fee_asset="USDT",
        is_maker=False,
        realized_pnl=D("0"),
        ts_ms=5,
    )
    journal.fill(fill)
    journal.fill(fill)  # a duplicate delivery is ignored
    pos = Position(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        side=PositionSide.BOTH,
        qty=D("-0.002"),
        entry_price=D("30000.1"),
        mark_price=D("30001"),
        unrealized_pnl=D("0"),
        leverage=10,
        margin_mode=MarginMode.CROSS,
        liquidation_price=D("0"),
        ts_ms=6,
    )
    journal.positions_snapshot([pos], ts_ms=6)
    journal.transition(EngineState.STARTING, EngineState.RUNNING, "started")
    journal.save_risk_state({"high_water_mark": "100.5"})
    journal.save_risk_state({"high_water_mark": "101.5"})
    journal.decision({"signal": {"side": "buy"}, "indicators": {"ema": D("1.25")}, "risk": "approved"})
    assert await journal.fills() == [fill]
    assert await journal.last_positions() == [
        (Venue.BINANCE, "BTCUSDT", PositionSide.BOTH, D("-0.002"), D("30000.1"))
    ]
    assert await journal.load_risk_state() == {"high_water_mark": "101.5"}
    [t] = await journal.transitions()
    assert (t.from_state, t.to_state, t.cause) == ("starting", "running", "started")
    assert (await journal.decisions())[-1]["indicators"] == {"ema": "1.25"}
    journal.positions_snapshot([], ts_ms=7)
    assert await journal.last_positions() == []


async def test_emergency_latch_when_restart_transitions_follow_then_still_latched(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    await j.start()
    assert not await j.emergency_latched()
    j.transition("running", "emergency_stopped", "daily_loss_limit")
    j.transition("emergency_stopped", "stopping", "operator stop")
    j.transition("stopping", "stopped", "stopped")
    await j.close()
    j = Journal(tmp_path / "j.db")
    await j.start()
    j.transition("stopped", "starting", "start")
    latch = await j.emergency_latch()
    assert latch is not None and latch.cause == "daily_loss_limit"
    j.transition("starting", "emergency_stopped", "latched")
    j.transition("emergency_stopped", "paused", "operator reset")
    assert not await j.emergency_latched()
    await j.close()


async def test_start_when_journal_open_in_another_journal_then_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="in use by another process"):
        await Journal(journal.path).start()


async def test_load_risk_state_when_never_saved_then_none(journal: Journal) -> None:
    assert await journal.load_risk_state() is None


async def test_writes_when_not_started_or_closed_then_journal_error(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    with pytest.raises(JournalError, match="not started"):
        j.decision({})
    await j.start()
    await j.close()
    with pytest.raises(JournalError, match="closed"):
        j.outcome("a", "ack", {})
    with pytest.raises(JournalError, match="closed"):
        await _intent(j, "x")


# ---- durability across kill -9 -------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from decimal import Decimal
    from engine.journal import Journal
    from engine.types import OrderType, Side, Venue

    async def main(path, prefix):
        j = Journal(path)
        await j.start()
        n = 0
        while True:
            cid = f"{prefix}-{n}"
            await j.intent(client_order_id=cid, venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY,
                           type=OrderType.MARKET, qty=Decimal("0.001"), price=None, signal={}, decision={})
            # only now is the intent committed: tell the parent (the "send" would happen here)
            sys.stdout.write(cid + "\\n")
            sys.stdout.flush()
            j.outcome(cid, "ack", {"n": n})
            j.decision({"n": n})
            n += 1

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_intent_when_process_killed_9_then_every_returned_intent_survives(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    returned: set[str] = set()
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), f"r{round_}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None
        got = 0
        # the child announces each intent after intent() returned; kill it mid-stream at a varying point
        target = 40 + 37 * round_
        for line in proc.stdout:
            returned.add(line.strip())
            got += 1
            if got >= target:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # anything printed before the kill landed: read it too
        returned.update(x.strip() for x in proc.stdout if x.strip())
        # reopening the killed file: not corrupt, and every intent whose intent() returned is there
        j = Journal(path)
        await j.start()
        stored = {i.client_order_id for i in await j.intents()}
        await j.close()
        assert len(returned) >= target
        assert returned <= stored, sorted(returned - stored)[:5]


# ---- migrations ----------------------------------------------------------------------------------------


async def test_start_when_file_is_v1_then_migrated_with_rows_kept_and_backup_taken(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(MIGRATIONS[0])
    con.execute("UPDATE schema_version SET version = 1")
    con.execute(
        "INSERT INTO intents (client_order_id, venue, symbol, side, type, qty, price, signal, decision, "
        "ts_ms) VALUES ('v1', 'binance', 'BTCUSDT', 'buy', 'limit', '0.5', '100.25', '{}', '{}', 7)"
    )
    con.close()
    j = Journal(path)
    await j.start()
    [i] = await j.pending_intents()
    await j.close()
    assert (i.client_order_id, i.qty, i.price, i.tif, i.reduce_only) == (
        "v1",
        D("0.5"),
        D("100.25"),
        TimeInForce.GTC,
        False,
    )
    with sqlite3.connect(path) as con2:
        assert con2.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 2
        cols = {r[1] for r in con2.execute("PRAGMA table_info(intents)")}
    assert {"tif", "reduce_only", "position_side", "trigger_price"} <= cols
    backup = newest_backup(path)
    assert backup is not None
    with sqlite3.connect(backup) as con3:  # the pre-migration backup is still v1
        assert con3.execute("SELECT version FROM schema_version").fetchone()[0] in (1, 2)


async def test_start_when_schema_newer_than_code_then_corrupt_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path)
    await j.start()
    await j.close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(JournalCorrupt, match="newer than this engine"):
        await Journal(path).start()


# ---- corruption ----------------------------------------------------------------------------------------


async def _filled_journal(path: Path, n: int = 300) -> None:
    j = Journal(path)
    await j.start()
    for k in range(n):
        await _intent(j, f"c{k}")
        j.decision({"k": k, "pad": "x" * 200})
    await j.close()  # checkpoints the WAL into the file and takes a backup


async def test_start_when_file_truncated_then_corrupt_naming_file_and_backup(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _filled_journal(path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(JournalCorrupt) as err:
        await Journal(path).start()
    backup = newest_backup(path)
    assert backup is not None
    assert str(path) in str(err.value) and str(backup) in str(err.value)
    assert path.stat().st_size == size // 2  # never recreated


async def test_start_when_file_truncated_to_zero_then_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _filled_journal(path, 5)
    path.write_bytes(b"")
    with pytest.raises(JournalCorrupt, match="empty"):
        await Journal(path).start()
    assert path.stat().st_size == 0


async def test_start_when_pages_overwritten_then_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _filled_journal(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for p in range(2, len(data) // page, 3):  # scribble over every third page past the schema
        data[p * page : p * page + 200] = os.urandom(200)
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="unusable"):
        await Journal(path).start()


async def test_start_when_header_overwritten_then_corrupt_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _filled_journal(path, 5)
    with path.open("r+b") as f:
        f.write(b"garbage garbage garbage!")
    with pytest.raises(JournalCorrupt, match="not an SQLite database"):
        await Journal(path).start()


async def test_start_when_file_missing_but_backups_exist_then_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await _filled_journal(path, 5)
    path.unlink()
    with pytest.raises(JournalCorrupt, match="missing"):
        await Journal(path).start()
    assert not path.exists()


async def test_start_when_other_sqlite_file_then_corrupt_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(JournalCorrupt, match="not a journal"):
        await Journal(path).start()


# ---- write failures --------------------------------------------------------------------------------------


async def test_write_when_disk_full_then_unhealthy_intent_refused_records_kept_no_crash(
    tmp_path: Path,
) -> None:
    reasons: list[str] = []
    path = tmp_path / "j.db"
    j = Journal(path, max_pages=40, retry_s=0.05)  # a tiny size cap: writes past it fail like a full disk
    j.on_unhealthy = reasons.append
    await j.start()
    big = "y" * 3000
    with pytest.raises(JournalError, match="full"):
        for k in range(200):
            j.decision({"k": k, "pad": big})
            await _intent(j, f"c{k}")
    assert not j.healthy and "full" in j.unhealthy_reason
    assert len(reasons) == 1 and "full" in reasons[0]
    # the loop keeps running; outcomes are still accepted (kept and retried), nothing raises
    j.outcome("c0", "ack", {})
    await asyncio.sleep(0.2)
    assert not j.healthy
    await j.close()


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[bool]:
    """A tiny tmpfs at ``path`` when this process may mount one (root in a container), else False."""
    path.mkdir()
    ok = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=True)


async def test_write_when_real_filesystem_full_then_unhealthy_and_recovers_after_space_freed(
    tmp_path: Path,
) -> None:
    with _tmpfs(tmp_path / "fs", "1m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (not root); the max_pages test covers a full disk")
        path = tmp_path / "fs" / "j.db"
        healthy_again: list[bool] = []
        j = Journal(path, retry_s=0.05)
        j.on_healthy = lambda: healthy_again.append(True)
        await j.start()
        filler = tmp_path / "fs" / "filler"
        with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # fill the file system to the last byte
                f.write(b"\0" * 4096)
        with pytest.raises(JournalError):
            for k in range(500):
                j.decision({"k": k, "pad": "z" * 4000})
                await _intent(j, f"c{k}")
        assert not j.healthy
        j.decision({"kept": True})  # held by the writer until space comes back
        filler.unlink()
        for _ in range(100):
            if j.healthy:
                break
            await asyncio.sleep(0.05)
        assert j.healthy and healthy_again
        assert (await j.decisions(limit=1))[0] == {"kept": True}
        await j.close()


async def test_write_when_file_system_read_only_then_unhealthy_no_crash(tmp_path: Path) -> None:
    reasons: list[str] = []
    with _tmpfs(tmp_path / "fs", "4m") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root without mount: neither a read-only mount nor chmod can deny writes")
            directory = tmp_path / "fs"
        else:
            directory = tmp_path / "fs"
        path = directory / "j.db"
        await _filled_journal(path, 3)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        else:
            path.chmod(0o444)
            directory.chmod(0o555)
        try:
            j = Journal(path, retry_s=0.05, on_unhealthy=reasons.append)
            await j.start()  # reading works: recovery can run, the engine pauses on the first write
            assert len(await j.intents()) == 3
            with pytest.raises(JournalError, match="not written"):
                await _intent(j, "ro")
            j.outcome("c0", "ack", {})
            await j.flush()
            assert not j.healthy and reasons and "readonly" in reasons[0].replace("-", "").lower()
            await j.close()
        finally:
            if mounted:
                subprocess.run(["mount", "-o", "remount,rw", str(directory)], check=True)
            else:
                directory.chmod(0o755)
                path.chmod(0o644)


async def test_queue_when_full_then_unhealthy_backlog_written_in_order_then_healthy(tmp_path: Path) -> None:
    events: list[str] = []
    j = Journal(tmp_path / "j.db", queue_size=4, max_batch=2)
    j.on_unhealthy = events.append
    j.on_healthy = lambda: events.append("healthy")
    await j.start()
    for k in range(200):  # far more than the queue holds, without yielding to the writer's replies
        j.decision({"k": k})
    assert not j.healthy and j.unhealthy_reason == "queue_full"
    assert j.stats()["backlog"] > 0
    await _intent(j, "after")  # an intent behind the backlog is still written, in order
    rows = await j.decisions(limit=1000)
    assert [r["k"] for r in rows] == list(range(200))
    assert j.healthy
    assert events == ["queue_full", "healthy"]
    await j.close()


# ---- backups -------------------------------------------------------------------------------------------


async def test_backups_when_taken_repeatedly_then_rotated_to_keep_and_restorable(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, backup_keep=3)
    await j.start()
    taken = []
    for k in range(6):
        await _intent(j, f"c{k}")
        taken.append(await j.backup())
    await j.close()  # one more on close
    backups = sorted((tmp_path / "backups").glob("j-*.db"))
    assert len(backups) == 3
    assert taken[-1] in backups and taken[0] not in backups
    newest = newest_backup(path)
    assert newest is not None
    restored = tmp_path / "restored" / "j.db"
    restored.parent.mkdir()
    restored.write_bytes(newest.read_bytes())
    j2 = Journal(restored)
    await j2.start()
    assert len(await j2.intents()) == 6
    await j2.close()


async def test_backups_when_interval_elapses_then_writer_takes_one(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, backup_interval_s=0.1)
    await j.start()
    await _intent(j, f"c-{uuid.uuid4().hex}")
    for _ in range(50):
        if newest_backup(path) is not None:
            break
        await asyncio.sleep(0.05)
    assert newest_backup(path) is not None
    await j.close()
