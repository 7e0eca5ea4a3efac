"""Binance USD-M REST front-end of the local venue (protocol notes 1.2-1.5, 1.9, 1.10, 3.3).

One dispatcher serves every path under ``/fapi/`` and the spot ``/api/v3/ping`` and ``/api/v3/time``
that python-binance calls at start. Per request, in order: route lookup, IP weight (429, then 418
bans), injected REST faults (503 / time-out), parameters (query string wins over the form body),
authentication (key header; signature, timestamp and recvWindow for signed endpoints), per-account
order counters, the handler, and the usage headers (``X-MBX-USED-WEIGHT-1M`` on every response,
``X-MBX-ORDER-COUNT-10S`` / ``-1M`` on order endpoints).

Handlers translate wire parameters into :class:`~engine.venue.model.OrderRequest` and calls on the
core; a :class:`~engine.venue.model.VenueReject` becomes the real Binance error code
(:mod:`engine.venue.binance.errors`); malformed input gets the venue's error reply, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from engine.venue import faults
from engine.venue.binance import wire
from engine.venue.binance.auth import authenticate, require_api_key
from engine.venue.binance.errors import (
    BinanceError,
    bad_param,
    error_for_reject,
    illegal_chars,
    missing_param,
)
from engine.venue.binance.streams import ListenKeyStore
from engine.venue.context import VenueContext
from engine.venue.model import (
    InstrumentSpec,
    MarginMode,
    OrderRequest,
    OrderType,
    Position,
    PositionSide,
    RejectReason,
    Side,
    TimeInForce,
    TriggerBy,
    VenueOrder,
    VenueReject,
)
from engine.venue.ratelimit import BinanceLimiter

__all__ = ["BinanceRest"]

log = logging.getLogger("engine.venue.binance.rest")

_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_INT = re.compile(r"^-?[0-9]{1,18}$")
_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
_KLINE_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
_ZERO = Decimal(0)
_ALL_FILLS = 2**62  # a ``core.fills`` limit above any history: every fill of the symbol


class Security(Enum):
    NONE = "NONE"
    USER_STREAM = "USER_STREAM"  # API key header only
    SIGNED = "SIGNED"  # key + signature + timestamp


@dataclass(frozen=True)
class Req:
    """One parsed request as handlers see it."""

    params: Mapping[str, str]
    account: str  # "" for public endpoints
    now_ms: int


Handler = Callable[[Req], object]


@dataclass(frozen=True)
class _Route:
    handler: Handler
    security: Security
    weight: Callable[[Mapping[str, str]], int]
    orders: int = 0  # new orders this request counts toward the order limits (10s window)
    apply_fault_after: bool = False  # http_5xx_after_apply applies to it


def _w(n: int) -> Callable[[Mapping[str, str]], int]:
    return lambda _params: n


def _depth_weight(params: Mapping[str, str]) -> int:
    raw = params.get("limit", "500")
    limit = int(raw) if raw.isdigit() and len(raw) < 6 else 500
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


class BinanceRest:
    """The REST dispatcher and handlers of the Binance USD-M front-end."""

    def __init__(self, ctx: VenueContext, *, limiter: BinanceLimiter, listen_keys: ListenKeyStore) -> None:
        self.ctx = ctx
        self.limiter = limiter
        self.listen_keys = listen_keys
        s = Security
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/api/v3/ping"): _Route(self._ping, s.NONE, _w(1)),
            ("GET", "/api/v3/time"): _Route(self._time, s.NONE, _w(1)),
            ("GET", "/fapi/v1/ping"): _Route(self._ping, s.NONE, _w(1)),
            ("GET", "/fapi/v1/time"): _Route(self._time, s.NONE, _w(1)),
            ("GET", "/fapi/v1/exchangeInfo"): _Route(self._exchange_info, s.NONE, _w(1)),
            ("GET", "/fapi/v1/depth"): _Route(self._depth, s.NONE, _depth_weight),
            ("GET", "/fapi/v1/ticker/bookTicker"): _Route(
                self._book_ticker, s.NONE, lambda p: 2 if "symbol" in p else 5
            ),
            ("GET", "/fapi/v1/ticker/price"): _Route(
                self._ticker_price, s.NONE, lambda p: 1 if "symbol" in p else 2
            ),
            ("GET", "/fapi/v1/premiumIndex"): _Route(
                self._premium_index, s.NONE, lambda p: 1 if "symbol" in p else 10
            ),
            ("GET", "/fapi/v1/klines"): _Route(self._klines, s.NONE, _w(5)),
            ("GET", "/fapi/v1/aggTrades"): _Route(self._agg_trades, s.NONE, _w(20)),
            ("GET", "/fapi/v1/trades"): _Route(self._agg_trades, s.NONE, _w(5)),
            ("POST", "/fapi/v1/order"): _Route(
                self._new_order, s.SIGNED, _w(0), orders=1, apply_fault_after=True
            ),
            ("PUT", "/fapi/v1/order"): _Route(self._amend_order, s.SIGNED, _w(1), orders=1),
            ("DELETE", "/fapi/v1/order"): _Route(self._cancel_order, s.SIGNED, _w(1)),
            ("GET", "/fapi/v1/order"): _Route(self._get_order, s.SIGNED, _w(1)),
            ("POST", "/fapi/v1/batchOrders"): _Route(
                self._batch_orders, s.SIGNED, _w(5), orders=5, apply_fault_after=True
            ),
            ("DELETE", "/fapi/v1/allOpenOrders"): _Route(self._cancel_all, s.SIGNED, _w(1)),
            ("GET", "/fapi/v1/openOrders"): _Route(
                self._open_orders, s.SIGNED, lambda p: 1 if "symbol" in p else 40
            ),
            ("GET", "/fapi/v1/openOrder"): _Route(self._get_open_order, s.SIGNED, _w(1)),
            ("POST", "/fapi/v1/algoOrder"): _Route(
                self._new_algo_order, s.SIGNED, _w(0), orders=1, apply_fault_after=True
            ),
            ("GET", "/fapi/v1/algoOrder"): _Route(self._get_algo_order, s.SIGNED, _w(1)),
            ("DELETE", "/fapi/v1/algoOrder"): _Route(self._cancel_algo_order, s.SIGNED, _w(1)),
            ("GET", "/fapi/v1/openAlgoOrders"): _Route(
                self._open_algo_orders, s.SIGNED, lambda p: 1 if "symbol" in p else 40
            ),
            ("DELETE", "/fapi/v1/algoOpenOrders"): _Route(self._cancel_all_algo, s.SIGNED, _w(1)),
            ("GET", "/fapi/v2/positionRisk"): _Route(self._position_risk_v2, s.SIGNED, _w(5)),
            ("GET", "/fapi/v3/positionRisk"): _Route(self._position_risk_v3, s.SIGNED, _w(5)),
            ("GET", "/fapi/v2/balance"): _Route(self._balance, s.SIGNED, _w(5)),
            ("GET", "/fapi/v3/balance"): _Route(self._balance, s.SIGNED, _w(5)),
            ("GET", "/fapi/v2/account"): _Route(self._account, s.SIGNED, _w(5)),
            ("GET", "/fapi/v3/account"): _Route(self._account, s.SIGNED, _w(5)),
            ("POST", "/fapi/v1/leverage"): _Route(self._leverage, s.SIGNED, _w(1)),
            ("POST", "/fapi/v1/marginType"): _Route(self._margin_type, s.SIGNED, _w(1)),
            ("POST", "/fapi/v1/positionSide/dual"): _Route(self._set_position_mode, s.SIGNED, _w(1)),
            ("GET", "/fapi/v1/positionSide/dual"): _Route(self._get_position_mode, s.SIGNED, _w(30)),
            ("GET", "/fapi/v1/leverageBracket"): _Route(self._leverage_bracket, s.SIGNED, _w(1)),
            ("GET", "/fapi/v1/userTrades"): _Route(self._user_trades, s.SIGNED, _w(5)),
            ("POST", "/fapi/v1/listenKey"): _Route(self._listen_key_create, s.USER_STREAM, _w(1)),
            ("PUT", "/fapi/v1/listenKey"): _Route(self._listen_key_keepalive, s.USER_STREAM, _w(1)),
            ("DELETE", "/fapi/v1/listenKey"): _Route(self._listen_key_close, s.USER_STREAM, _w(1)),
        }

    # ---- dispatcher ---------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        ctx.count("binance.rest.requests")
        ip = request.remote or "?"
        path = request.rel_url.path
        route = self.routes.get((request.method, path))
        weight = 1
        if route is not None:
            try:
                weight = route.weight(request.rel_url.query)
            except (ValueError, UnicodeError):
                weight = 1
        now = ctx.now_ms()
        decision = self.limiter.check_request(ip, weight, now)
        headers = {"X-MBX-USED-WEIGHT-1M": str(decision.used_weight)}
        if not decision.allowed:
            ctx.count(f"binance.rest.http_{decision.status}")
            headers["Retry-After"] = str(decision.retry_after_s)
            return _json({"code": decision.code, "msg": decision.msg}, decision.status, headers)
        if route is None:
            ctx.count("binance.rest.unknown_path")
            return _json(
                {"code": -5000, "msg": f"Path {path}, Method {request.method} is invalid"}, 404, headers
            )
        fault = faults.take_http_fault(ctx)
        if fault == "5xx":
            return _json(
                {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
                503,
                headers,
            )
        if fault == "timeout":
            await asyncio.sleep(ctx.faults.timeout_s)
            if request.transport is not None:
                request.transport.close()
            return _json(
                {"code": -1007, "msg": "Timeout waiting for response from backend server."}, 408, headers
            )
        try:
            raw_body_bytes = await request.read()
            raw_body = raw_body_bytes.decode("utf-8")
            raw_query = request.rel_url.raw_query_string
            params = _parse_params(raw_query, raw_body)
            account = ""
            if route.security is Security.SIGNED:
                account = authenticate(
                    headers=request.headers,
                    params=params,
                    raw_query=raw_query,
                    raw_body=raw_body,
                    now_ms=ctx.now_ms(),
                    secret_for=ctx.core.secret_for,
                )
            elif route.security is Security.USER_STREAM:
                account, _secret = require_api_key(request.headers, ctx.core.secret_for)
            if route.orders:
                count_1m = 1
                order_decision = self.limiter.check_orders(account, route.orders, count_1m, now)
                headers["X-MBX-ORDER-COUNT-10S"] = str(order_decision.order_count_10s)
                headers["X-MBX-ORDER-COUNT-1M"] = str(order_decision.order_count_1m)
                if not order_decision.allowed:
                    headers["Retry-After"] = str(order_decision.retry_after_s)
                    ctx.count("binance.rest.order_rate_limited")
                    return _json({"code": order_decision.code, "msg": order_decision.msg}, 429, headers)
            result = route.handler(Req(params=params, account=account, now_ms=ctx.now_ms()))
        except UnicodeDecodeError:
            ctx.count("binance.rest.rejected")
            return _json(
                {"code": -1100, "msg": "Illegal characters found in the request body."}, 400, headers
            )
        except BinanceError as err:
            ctx.count("binance.rest.rejected")
            return _json(err.body(), err.status, headers)
        except VenueReject as reject:
            ctx.count("binance.rest.rejected")
            mapped = error_for_reject(reject)
            return _json(mapped.body(), mapped.status, headers)
        except Exception as exc:  # a venue bug: reported, counted, logged, never swallowed
            ctx.count("binance.rest.internal_error")
            log.exception("binance_rest_internal_error path=%s error=%s", path, type(exc).__name__)
            return _json(
                {"code": -1000, "msg": "An unknown error occurred while processing the request."},
                500,
                headers,
            )
        if route.apply_fault_after and faults.take_http_5xx_after_apply(ctx):
            return _json(
                {
                    "code": -1007,
                    "msg": "Timeout waiting for response from backend server. Send status unknown; "
                    "execution status unknown.",
                },
                503,
                headers,
            )
        return _json(result, 200, headers)

    # ---- parameter helpers --------------------------------------------------------------------

    def _spec(self, params: Mapping[str, str], *, required: bool = True) -> InstrumentSpec | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise missing_param("symbol")
            return None
        spec = self.ctx.core.instruments.get(symbol.upper() if symbol.isalnum() else symbol)
        if spec is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return spec

    def _need_spec(self, params: Mapping[str, str]) -> InstrumentSpec:
        spec = self._spec(params, required=True)
        assert spec is not None
        return spec

    # ---- public -------------------------------------------------------------------------------

    def _ping(self, req: Req) -> object:
        return {}

    def _time(self, req: Req) -> object:
        return {"serverTime": req.now_ms}

    def _exchange_info(self, req: Req) -> object:
        return wire.exchange_info_json(
            list(self.ctx.core.instruments.values()),
            server_time=req.now_ms,
            rate_limits=self.limiter.rate_limits_json(),
        )

    def _depth(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        limit = _int_param(req.params, "limit", default=500)
        if limit not in _DEPTH_LIMITS:
            raise BinanceError(
                400,
                -1100,
                "Illegal characters found in parameter 'limit'; "
                "legal range is '5, 10, 20, 50, 100, 500, 1000'.",
            )
        last_id, bids, asks = self.ctx.core.depth(spec.symbol, limit)
        return wire.depth_snapshot_json(spec, last_id, bids, asks, now_ms=req.now_ms)

    def _book_ticker(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        specs = [spec] if spec is not None else list(self.ctx.core.instruments.values())
        out = []
        for s in specs:
            last_id, bids, asks = self.ctx.core.depth(s.symbol, 5)
            out.append(
                wire.book_ticker_json(
                    s,
                    bids[0] if bids else None,
                    asks[0] if asks else None,
                    now_ms=req.now_ms,
                    last_id=last_id,
                )
            )
        return out[0] if spec is not None else out

    def _ticker_price(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        specs = [spec] if spec is not None else list(self.ctx.core.instruments.values())
        out = []
        for s in specs:
            mark = self.ctx.core.mark(s.symbol)
            out.append({"symbol": s.symbol, "price": wire.price_str(s, mark.last_price), "time": mark.ts_ms})
        return out[0] if spec is not None else out

    def _premium_index(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        specs = [spec] if spec is not None else list(self.ctx.core.instruments.values())
        out = [wire.premium_index_json(s, self.ctx.core.mark(s.symbol)) for s in specs]
        return out[0] if spec is not None else out

    def _agg_trades(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        limit = _int_param(req.params, "limit", default=500)
        if not 1 <= limit <= 1000:
            raise bad_param("limit", str(limit))
        trades = self.ctx.core.recent_trades(spec.symbol, limit)
        return [wire.agg_trade_json(spec, t) for t in trades]

    def _klines(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        interval = req.params.get("interval")
        if not interval:
            raise missing_param("interval")
        step = _KLINE_MS.get(interval)
        if step is None:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = _int_param(req.params, "limit", default=500)
        if not 1 <= limit <= 1500:
            raise bad_param("limit", str(limit))
        start = _int_param(req.params, "startTime", default=0)
        end = _int_param(req.params, "endTime", default=2**62)
        trades = [t for t in self.ctx.core.recent_trades(spec.symbol, 10_000) if start <= t.ts_ms <= end]
        trades.sort(key=lambda t: (t.ts_ms, t.trade_id))
        bars: dict[int, list[Any]] = {}
        for t in trades:
            open_ms = t.ts_ms - t.ts_ms % step
            bar = bars.get(open_ms)
            quote = t.price * t.qty
            taker_buy = t.aggressor is Side.BUY
            if bar is None:
                bars[open_ms] = [
                    open_ms,
                    t.price,
                    t.price,
                    t.price,
                    t.price,
                    t.qty,
                    quote,
                    1,
                    t.qty if taker_buy else _ZERO,
                    quote if taker_buy else _ZERO,
                ]
            else:
                bar[2] = max(bar[2], t.price)
                bar[3] = min(bar[3], t.price)
                bar[4] = t.price
                bar[5] += t.qty
                bar[6] += quote
                bar[7] += 1
                if taker_buy:
                    bar[8] += t.qty
                    bar[9] += quote
        out = []
        for open_ms in sorted(bars)[-limit:]:
            b = bars[open_ms]
            out.append(
                [
                    open_ms,
                    wire.price_str(spec, b[1]),
                    wire.price_str(spec, b[2]),
                    wire.price_str(spec, b[3]),
                    wire.price_str(spec, b[4]),
                    wire.qty_str(spec, b[5]),
                    open_ms + step - 1,
                    wire.money(b[6]),
                    b[7],
                    wire.qty_str(spec, b[8]),
                    wire.money(b[9]),
                    "0",
                ]
            )
        return out

    # ---- orders -------------------------------------------------------------------------------

    def _order_request(
        self, params: Mapping[str, str], account: str, *, algo: bool
    ) -> tuple[OrderRequest, InstrumentSpec]:
        spec = self._need_spec(params)
        side_raw = params.get("side")
        if not side_raw:
            raise missing_param("side")
        if side_raw not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        side = Side(side_raw)
        type_raw = params.get("type") or params.get("orderType")
        if not type_raw:
            raise missing_param("type")
        if algo:
            algo_type = params.get("algoType")
            if not algo_type:
                raise missing_param("algoType")
            if algo_type != "CONDITIONAL":
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'algoType'.")
            if type_raw not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise BinanceError(400, -1116, "Invalid orderType.")
        else:
            if type_raw in (
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ):
                raise BinanceError(
                    400,
                    -4120,
                    "Order type not supported for this endpoint. "
                    "Please use the Algo Order API endpoints instead.",
                )
            if type_raw not in ("LIMIT", "MARKET"):
                raise BinanceError(400, -1116, "Invalid orderType.")
        order_type = OrderType(type_raw)

        hedge = self.ctx.core.account_state(account).hedge_mode
        ps_raw = params.get("positionSide", "BOTH")
        if ps_raw not in ("BOTH", "LONG", "SHORT"):
            raise bad_param("positionSide", ps_raw)
        reduce_raw = params.get("reduceOnly")
        reduce_only = _bool_param(params, "reduceOnly")
        if hedge and reduce_raw is not None and reduce_only:
            raise BinanceError(400, -1106, "Parameter 'reduceonly' sent when not required.")
        close_position = _bool_param(params, "closePosition")
        if close_position and not algo:
            raise BinanceError(400, -1106, "Parameter 'closePosition' sent when not required.")

        qty: Decimal | None = None
        qty_raw = params.get("quantity")
        if close_position:
            if qty_raw:
                raise BinanceError(400, -1106, "Parameter 'quantity' sent when not required.")
            if reduce_only:
                raise BinanceError(400, -1106, "Parameter 'reduceOnly' sent when not required.")
        else:
            if not qty_raw:
                raise missing_param("quantity")
            qty = _decimal_param("quantity", qty_raw)
            if qty <= 0:
                raise BinanceError(400, -4003, "Quantity less than or equal to zero.")

        price: Decimal | None = None
        tif = TimeInForce.GTC
        if order_type is OrderType.LIMIT:
            price_raw = params.get("price")
            if not price_raw:
                raise missing_param("price")
            price = _decimal_param("price", price_raw)
            if price <= 0:
                raise BinanceError(400, -4013, "Price less than min price.")
            tif_raw = params.get("timeInForce")
            if not tif_raw:
                raise missing_param("timeInForce")
            tif = _tif(tif_raw)
        elif params.get("price") and order_type is OrderType.MARKET:
            raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")

        trigger: Decimal | None = None
        trigger_by = TriggerBy.LAST
        if algo:
            trigger_raw = params.get("triggerPrice") or params.get("stopPrice")
            if not trigger_raw:
                raise missing_param("triggerPrice")
            trigger = _decimal_param("triggerPrice", trigger_raw)
            if trigger <= 0:
                raise BinanceError(400, -4013, "Price less than min price.")
            wt = params.get("workingType", "CONTRACT_PRICE")
            if wt not in ("MARK_PRICE", "CONTRACT_PRICE"):
                raise bad_param("workingType", wt)
            trigger_by = TriggerBy.MARK if wt == "MARK_PRICE" else TriggerBy.LAST
            if "timeInForce" in params:
                _tif(params["timeInForce"])  # validated; conditional market orders ignore it

        cid_key = "clientAlgoId" if algo else "newClientOrderId"
        client_id = params.get(cid_key)
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise BinanceError(400, -4015, "Client order id is not valid.")
        for unsupported in ("priceMatch", "goodTillDate", "activatePrice", "callbackRate"):
            value = params.get(unsupported)
            if value and value != "NONE":
                raise BinanceError(400, -1106, f"Parameter '{unsupported}' sent when not required.")
        resp_type = params.get("newOrderRespType", "ACK")
        if resp_type not in ("ACK", "RESULT"):
            raise bad_param("newOrderRespType", resp_type)
        request = OrderRequest(
            symbol=spec.symbol,
            side=side,
            type=order_type,
            qty=qty,
            price=price,
            tif=tif,
            reduce_only=reduce_only,
            close_position=close_position,
            position_side=PositionSide(ps_raw),
            client_order_id=client_id,
            trigger_price=trigger,
            trigger_by=trigger_by,
        )
        return request, spec

    def _place(self, params: Mapping[str, str], account: str) -> dict[str, object]:
        request, spec = self._order_request(params, account, algo=False)
        try:
            order = self.ctx.core.place_order(account, request)
        except VenueReject as reject:
            if reject.reason is RejectReason.PRICE_OUT_OF_RANGE and request.price is not None:
                if request.price < spec.min_price:
                    raise BinanceError(400, -4013, "Price less than min price.") from None
                if request.price < self.ctx.core.mark(spec.symbol).mark_price:
                    raise error_for_reject(reject, context="band_low") from None
            raise
        self.ctx.count("binance.orders.placed")
        ack = params.get("newOrderRespType", "ACK") != "RESULT"
        return wire.order_json(order, spec, ack=ack)

    def _new_order(self, req: Req) -> object:
        return self._place(req.params, req.account)

    def _batch_orders(self, req: Req) -> object:
        raw = req.params.get("batchOrders")
        if not raw:
            raise missing_param("batchOrders")
        try:
            items = json.loads(raw, parse_float=str, parse_int=str)
        except (ValueError, RecursionError):
            raise BinanceError(400, -1130, "Data sent for parameter 'batchOrders' is not valid.") from None
        if not isinstance(items, list) or not items or len(items) > 5:
            raise BinanceError(400, -1130, "Data sent for parameter 'batchOrders' is not valid.")
        out: list[object] = []
        for item in items:
            if not isinstance(item, dict):
                out.append({"code": -1130, "msg": "Data sent for parameter 'batchOrders' is not valid."})
                continue
            params = {str(k): _scalar_str(v) for k, v in item.items()}
            try:
                out.append(self._place(params, req.account))
            except BinanceError as err:
                out.append(err.body())
            except VenueReject as reject:
                out.append(error_for_reject(reject).body())
        return out

    def _order_ref(
        self, params: Mapping[str, str], id_key: str, cid_key: str
    ) -> tuple[int | None, str | None]:
        order_id: int | None = None
        if params.get(id_key):
            order_id = _int_param(params, id_key, default=0)
        client_id = params.get(cid_key) or None
        if order_id is None and client_id is None:
            raise BinanceError(400, -1102, f"Either {id_key} or {cid_key} must be sent.")
        return order_id, client_id

    def _lookup(
        self, account: str, symbol: str, order_id: int | None, client_id: str | None, *, algo: bool
    ) -> VenueOrder:
        try:
            order = self.ctx.core.get_order(account, symbol, order_id=order_id, client_order_id=client_id)
        except VenueReject as reject:
            raise error_for_reject(reject, context="query") from None
        if (order.type in wire.CONDITIONAL_TYPES) != algo:
            raise BinanceError(400, -2013, "Order does not exist.")
        return order

    def _get_order(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        order_id, client_id = self._order_ref(req.params, "orderId", "origClientOrderId")
        order = self._lookup(req.account, spec.symbol, order_id, client_id, algo=False)
        return wire.order_json(order, spec, with_time=True)

    def _get_open_order(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        order_id, client_id = self._order_ref(req.params, "orderId", "origClientOrderId")
        order = self._lookup(req.account, spec.symbol, order_id, client_id, algo=False)
        if not order.is_open:
            raise BinanceError(400, -2013, "Order does not exist.")
        return wire.order_json(order, spec, with_time=True)

    def _cancel_order(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        order_id, client_id = self._order_ref(req.params, "orderId", "origClientOrderId")
        existing = self._lookup_for_cancel(req.account, spec.symbol, order_id, client_id)
        if existing.type in wire.CONDITIONAL_TYPES:
            raise BinanceError(400, -2011, "Unknown order sent.")
        try:
            order = self.ctx.core.cancel_order(
                req.account, spec.symbol, order_id=order_id, client_order_id=client_id
            )
        except VenueReject as reject:
            raise error_for_reject(reject, context="cancel") from None
        return wire.order_json(order, spec)

    def _lookup_for_cancel(
        self, account: str, symbol: str, order_id: int | None, client_id: str | None
    ) -> VenueOrder:
        try:
            return self.ctx.core.get_order(account, symbol, order_id=order_id, client_order_id=client_id)
        except VenueReject as reject:
            raise error_for_reject(reject, context="cancel") from None

    def _amend_order(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        order_id, client_id = self._order_ref(req.params, "orderId", "origClientOrderId")
        for name in ("side", "quantity", "price"):
            if not req.params.get(name):
                raise missing_param(name)
        qty = _decimal_param("quantity", req.params["quantity"])
        price = _decimal_param("price", req.params["price"])
        if qty <= 0:
            raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
        existing = self._lookup(req.account, spec.symbol, order_id, client_id, algo=False)
        if existing.side.value != req.params["side"]:
            raise BinanceError(400, -1117, "Invalid side.")
        if existing.type is not OrderType.LIMIT:
            raise BinanceError(400, -4143, "Only limit orders can be modified.")
        try:
            order = self.ctx.core.amend_order(
                req.account, spec.symbol, order_id=existing.order_id, qty=qty, price=price
            )
        except VenueReject as reject:
            raise error_for_reject(reject, context="cancel") from None
        return wire.order_json(order, spec)

    def _cancel_all(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        for order in self.ctx.core.open_orders(req.account, spec.symbol):
            if order.type not in wire.CONDITIONAL_TYPES:
                self.ctx.core.cancel_order(req.account, spec.symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _open_orders(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        orders = self.ctx.core.open_orders(req.account, spec.symbol if spec else None)
        specs = self.ctx.core.instruments
        return [
            wire.order_json(o, specs[o.symbol], with_time=True)
            for o in orders
            if o.type not in wire.CONDITIONAL_TYPES
        ]

    # ---- conditional (algo) orders ------------------------------------------------------------

    def _new_algo_order(self, req: Req) -> object:
        request, spec = self._order_request(req.params, req.account, algo=True)
        order = self.ctx.core.place_order(req.account, request)
        self.ctx.count("binance.orders.placed_algo")
        return wire.algo_order_json(order, spec)

    def _algo_ref(self, params: Mapping[str, str]) -> tuple[int | None, str | None]:
        return self._order_ref(params, "algoId", "clientAlgoId")

    def _find_algo(self, account: str, params: Mapping[str, str], *, context: str) -> VenueOrder:
        order_id, client_id = self._algo_ref(params)
        spec = self._spec(params, required=False)
        symbols = [spec.symbol] if spec else list(self.ctx.core.instruments)
        for symbol in symbols:
            try:
                order = self.ctx.core.get_order(account, symbol, order_id=order_id, client_order_id=client_id)
            except VenueReject as reject:
                if reject.reason in (RejectReason.UNKNOWN_ORDER, RejectReason.UNKNOWN_SYMBOL):
                    continue
                raise
            if order.type in wire.CONDITIONAL_TYPES:
                return order
        if context == "cancel":
            raise BinanceError(400, -2011, "Unknown order sent.")
        raise BinanceError(400, -2013, "Order does not exist.")

    def _get_algo_order(self, req: Req) -> object:
        order = self._find_algo(req.account, req.params, context="query")
        return wire.algo_order_json(order, self.ctx.core.instruments[order.symbol])

    def _cancel_algo_order(self, req: Req) -> object:
        order = self._find_algo(req.account, req.params, context="cancel")
        try:
            self.ctx.core.cancel_order(req.account, order.symbol, order_id=order.order_id)
        except VenueReject as reject:
            raise error_for_reject(reject, context="cancel") from None
        return {
            "algoId": order.order_id,
            "clientAlgoId": order.client_order_id,
            "code": "200",
            "msg": "success",
        }

    def _open_algo_orders(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        orders = self.ctx.core.open_orders(req.account, spec.symbol if spec else None)
        specs = self.ctx.core.instruments
        return [wire.algo_order_json(o, specs[o.symbol]) for o in orders if o.type in wire.CONDITIONAL_TYPES]

    def _cancel_all_algo(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        for order in self.ctx.core.open_orders(req.account, spec.symbol):
            if order.type in wire.CONDITIONAL_TYPES:
                self.ctx.core.cancel_order(req.account, spec.symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---- account ------------------------------------------------------------------------------

    def _all_positions(self, account: str, symbol: str | None) -> list[Position]:
        """Every (symbol, side) slot, zero positions included, in instrument order."""
        core = self.ctx.core
        held = {(p.symbol, p.position_side): p for p in core.positions(account, symbol)}
        hedge = core.account_state(account).hedge_mode
        sides = (PositionSide.LONG, PositionSide.SHORT) if hedge else (PositionSide.BOTH,)
        symbols = [symbol] if symbol else list(core.instruments)
        out: list[Position] = []
        for sym in symbols:
            for side in sides:
                p = held.get((sym, side))
                if p is None:
                    mark = core.mark(sym).mark_price
                    p = Position(
                        account=account,
                        symbol=sym,
                        position_side=side,
                        qty=_ZERO,
                        entry_price=_ZERO,
                        mark_price=mark,
                        unrealized_pnl=_ZERO,
                        realized_pnl=_ZERO,
                        leverage=core.leverage(account, sym),
                        margin_mode=core.margin_mode(account, sym),
                        isolated_margin=_ZERO,
                        initial_margin=_ZERO,
                        maint_margin=_ZERO,
                        liquidation_price=_ZERO,
                        notional=_ZERO,
                        updated_ms=0,
                    )
                out.append(p)
        return out

    def _position_risk_v2(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        specs = self.ctx.core.instruments
        return [
            wire.position_risk_v2_json(specs[p.symbol], p, max_notional=Decimal(50_000_000))
            for p in self._all_positions(req.account, spec.symbol if spec else None)
        ]

    def _position_risk_v3(self, req: Req) -> object:
        """v3 lists only symbols with a position or open orders."""
        spec = self._spec(req.params, required=False)
        core = self.ctx.core
        with_orders = {o.symbol for o in core.open_orders(req.account, spec.symbol if spec else None)}
        out = []
        for p in self._all_positions(req.account, spec.symbol if spec else None):
            if p.qty != 0 or p.symbol in with_orders:
                out.append(wire.position_risk_v3_json(core.instruments[p.symbol], p))
        return out

    def _isolated(self, account: str) -> Decimal:
        return sum(
            (
                p.isolated_margin
                for p in self.ctx.core.positions(account)
                if p.margin_mode is MarginMode.ISOLATED
            ),
            _ZERO,
        )

    def _balance(self, req: Req) -> object:
        state = self.ctx.core.account_state(req.account)
        return wire.balance_json(
            state, isolated_margin=self._isolated(req.account), alias=_alias(req.account)
        )

    def _account(self, req: Req) -> object:
        core = self.ctx.core
        state = core.account_state(req.account)
        positions = [(core.instruments[p.symbol], p) for p in self._all_positions(req.account, None)]
        return wire.account_json(state, positions, isolated_margin=self._isolated(req.account))

    def _leverage(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        if not req.params.get("leverage"):
            raise missing_param("leverage")
        leverage = _int_param(req.params, "leverage", default=0)
        try:
            self.ctx.core.set_leverage(req.account, spec.symbol, leverage)
        except VenueReject as reject:
            if reject.reason is not RejectReason.NOT_MODIFIED:  # same leverage again: Binance answers success
                raise
        return {"leverage": leverage, "maxNotionalValue": "50000000", "symbol": spec.symbol}

    def _margin_type(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        raw = req.params.get("marginType")
        if not raw:
            raise missing_param("marginType")
        modes = {"ISOLATED": MarginMode.ISOLATED, "CROSSED": MarginMode.CROSS, "CROSS": MarginMode.CROSS}
        mode = modes.get(raw.upper())
        if mode is None:
            raise bad_param("marginType", raw)
        try:
            self.ctx.core.set_margin_mode(req.account, spec.symbol, mode)
        except VenueReject as reject:
            if reject.reason is RejectReason.NOT_MODIFIED:
                raise BinanceError(400, -4046, "No need to change margin type.") from None
            if reject.reason in (
                RejectReason.MODE_CHANGE_POSITION_EXISTS,
                RejectReason.MODE_CHANGE_OPEN_ORDERS,
            ):
                code = -4048 if reject.reason is RejectReason.MODE_CHANGE_POSITION_EXISTS else -4047
                raise BinanceError(
                    400, code, "Margin type cannot be changed if there exists position or open orders."
                ) from None
            raise
        return {"code": 200, "msg": "success"}

    def _set_position_mode(self, req: Req) -> object:
        raw = req.params.get("dualSidePosition")
        if not raw:
            raise missing_param("dualSidePosition")
        if raw.lower() not in ("true", "false"):
            raise bad_param("dualSidePosition", raw)
        try:
            self.ctx.core.set_position_mode(req.account, hedge=raw.lower() == "true")
        except VenueReject as reject:
            raise error_for_reject(reject, context="position_mode") from None
        return {"code": 200, "msg": "success"}

    def _get_position_mode(self, req: Req) -> object:
        return {"dualSidePosition": self.ctx.core.account_state(req.account).hedge_mode}

    def _leverage_bracket(self, req: Req) -> object:
        spec = self._spec(req.params, required=False)
        if spec is not None:
            return wire.leverage_bracket_json(spec)
        return [wire.leverage_bracket_json(s) for s in self.ctx.core.instruments.values()]

    def _user_trades(self, req: Req) -> object:
        spec = self._need_spec(req.params)
        limit = _int_param(req.params, "limit", default=500)
        if not 1 <= limit <= 1000:
            raise bad_param("limit", str(limit))
        if not req.params.get("orderId"):
            fills = self.ctx.core.fills(req.account, spec.symbol, limit)
        else:  # one order's trades (a triggered conditional order's: its ``actualOrderId``)
            order_id = _int_param(req.params, "orderId", default=0)
            history = self.ctx.core.fills(req.account, spec.symbol, _ALL_FILLS)
            fills = [f for f in history if f.order_id == order_id][-limit:]
        return [wire.user_trade_json(spec, f) for f in fills]

    # ---- listenKey ----------------------------------------------------------------------------

    def _listen_key_create(self, req: Req) -> object:
        return {"listenKey": self.listen_keys.create(req.account, self.ctx.core.now_ms())}

    def _listen_key_keepalive(self, req: Req) -> object:
        key = self.listen_keys.keepalive(req.account, req.params.get("listenKey"), self.ctx.core.now_ms())
        return {"listenKey": key}

    def _listen_key_close(self, req: Req) -> object:
        self.listen_keys.close(req.account, req.params.get("listenKey"))
        return {}


# ---- module helpers ---------------------------------------------------------------------------------


def _json(body: object, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _parse_params(raw_query: str, raw_body: str) -> dict[str, str]:
    """Form body then query string (the query wins on a repeated key), percent-decoded."""
    params: dict[str, str] = {}
    if raw_body:
        for key, value in parse_qsl(raw_body, keep_blank_values=True, max_num_fields=200):
            params[key] = value
    if raw_query:
        for key, value in parse_qsl(raw_query, keep_blank_values=True, max_num_fields=200):
            params[key] = value
    return params


def _int_param(params: Mapping[str, str], name: str, *, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not _INT.match(raw):
        raise bad_param(name, raw)
    return int(raw)


def _decimal_param(name: str, raw: str) -> Decimal:
    value = wire.parse_decimal(raw)
    if value is None:
        raise illegal_chars(name)
    return value


def _bool_param(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    low = raw.lower()
    if low not in ("true", "false"):
        raise bad_param(name, raw)
    return low == "true"


def _tif(raw: str) -> TimeInForce:
    mapping = {
        "GTC": TimeInForce.GTC,
        "IOC": TimeInForce.IOC,
        "FOK": TimeInForce.FOK,
        "GTX": TimeInForce.POST_ONLY,
    }
    tif = mapping.get(raw)
    if tif is None:
        raise BinanceError(400, -1115, "Invalid timeInForce.")
    return tif


def _scalar_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _alias(account: str) -> str:
    return "".join(c for c in account if c.isalnum())[:4] or "acct"
