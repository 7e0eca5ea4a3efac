"""Bybit v5 REST front-end of the local venue, category ``linear`` (protocol notes 2.1 to 2.5, 2.9, 2.10,
3.1, 3.7).

Every reply is HTTP 200 with ``{"retCode": <number>, "retMsg", "result", "retExtInfo": {}, "time"}``
(except the injected 5xx fault and the IP ban). Per request, in order: the per-IP request window
(:meth:`BybitRest.check_ip`, run by the front-end's middleware on every ``/v5/...`` REST path, known
or not: more than ``requests_per_window`` in a rolling ``window_ms`` bans the IP for ``ban_ms``, and
every request of a banned IP gets HTTP 403 "access too frequent" with a non-JSON body, like Bybit's
edge), injected REST faults (HTTP 503 with retCode 10016, or a time-out that drops the connection),
parameters (the GET query string or the POST JSON body), authentication of private endpoints over the
raw bytes (:mod:`engine.venue.bybit.auth`), the per-UID per-endpoint one-second limit (retCode 10006;
``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and ``X-Bapi-Limit-Reset-Timestamp`` on every private
reply), then the handler. A
:class:`~engine.venue.model.VenueReject` becomes Bybit's retCode (:mod:`engine.venue.bybit.errors`);
malformed input gets a retCode error, never an HTTP 500.

Bybit acknowledges an order with its ids only and reports the outcome on the order stream: a
PostOnly that would take liquidity, or a FOK that cannot fill in full, is accepted (retCode 0) and
then shown cancelled (``EC_PostOnlyWillTakeLiquidity`` / ``EC_NoImmediateQtyToFill``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from engine.venue import faults
from engine.venue.bybit import wire
from engine.venue.bybit.auth import verify_rest
from engine.venue.bybit.errors import (
    LEVERAGE_NOT_MODIFIED,
    MARGIN_MODE_NOT_MODIFIED,
    ORDER_NOT_EXISTS,
    PARAMS_ERROR,
    POSITION_MODE_NOT_MODIFIED,
    RATE_LIMITED,
    SERVER_ERROR,
    SERVER_TIMEOUT,
    BybitError,
    reject_to_error,
)
from engine.venue.bybit.streams import KLINE_INTERVALS, BybitHub
from engine.venue.context import VenueContext
from engine.venue.model import (
    InstrumentSpec,
    MarginMode,
    OrderRequest,
    OrderStatus,
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
from engine.venue.ratelimit import BybitIpLimiter, BybitIpLimits, PerSecondLimiter

__all__ = ["ENDPOINT_LIMITS", "IP_BANNED_BODY", "STREAM_PATHS", "BybitRest", "Req"]

log = logging.getLogger("engine.venue.bybit.rest")

_LINK_ID = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
_ZERO = Decimal(0)
_TIF_IN = {
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
    "PostOnly": TimeInForce.POST_ONLY,
}
_OTHER_CATEGORIES = frozenset({"spot", "inverse", "option"})
_CLOSED_BY_CORE = (RejectReason.UNKNOWN_ORDER, RejectReason.ORDER_CLOSED)

# Per-UID, per-endpoint requests per second (Bybit's rate-limit table for linear).
ENDPOINT_LIMITS: dict[str, int] = {
    "/v5/order/create": 10,
    "/v5/order/amend": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/position/set-leverage": 10,
    "/v5/position/switch-mode": 10,
    "/v5/position/switch-isolated": 10,
    "/v5/account/set-margin-mode": 5,
    "/v5/account/info": 50,
    "/v5/account/fee-rate": 10,
    "/v5/user/query-api": 10,
}

#: the WebSocket endpoints under ``/v5/``: not REST requests, so outside the IP request window
STREAM_PATHS = frozenset({"/v5/public/linear", "/v5/private"})

#: what Bybit's edge answers an IP over its limit: HTTP 403, no JSON envelope
IP_BANNED_BODY = (
    "<html><head><title>403 Forbidden</title></head>"
    "<body><h1>403 Forbidden</h1><p>access too frequent</p></body></html>"
)


@dataclass(frozen=True, slots=True)
class Req:
    params: Mapping[str, object]
    account: str  # "" on public endpoints
    now_ms: int


Handler = Callable[[Req], object]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    handler: Handler
    private: bool
    applies: bool = False  # an order action: http_5xx_after_apply answers 503 after applying it


def _json(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


def _str(params: Mapping[str, object], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
        return str(value)
    return value


def _required(params: Mapping[str, object], name: str) -> str:
    value = _str(params, name)
    if value is None:
        raise BybitError(PARAMS_ERROR, f"params error: {name} is required")
    return value


def _opt_int(params: Mapping[str, object], name: str, *, low: int, high: int, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    return wire.parse_int(raw, name, low=low, high=high)


def _cursor(params: Mapping[str, object]) -> int:
    return _opt_int(params, "cursor", low=0, high=10**9, default=0)


def _page(items: list[dict[str, object]], offset: int, limit: int) -> tuple[list[dict[str, object]], str]:
    page = items[offset : offset + limit]
    end = offset + limit
    return page, (str(end) if end < len(items) else "")


class BybitRest:
    """The ``/v5/...`` REST routes of one venue context, sharing the stream hub's state."""

    def __init__(
        self,
        ctx: VenueContext,
        hub: BybitHub,
        *,
        limits: Mapping[str, int] | None = None,
        ip_limits: BybitIpLimits | None = None,
    ) -> None:
        self.ctx = ctx
        self.core = ctx.core
        self.hub = hub
        self.limiter = PerSecondLimiter(limits={**ENDPOINT_LIMITS, **(limits or {})})
        self.ip_limiter = BybitIpLimiter(ip_limits)
        self.launch_ms = ctx.now_ms()
        self.routes: dict[str, _Route] = {
            "/v5/market/time": _Route("GET", self.server_time, private=False),
            "/v5/market/instruments-info": _Route("GET", self.instruments_info, private=False),
            "/v5/market/orderbook": _Route("GET", self.orderbook, private=False),
            "/v5/market/tickers": _Route("GET", self.tickers, private=False),
            "/v5/market/kline": _Route("GET", self.kline, private=False),
            "/v5/market/recent-trade": _Route("GET", self.recent_trade, private=False),
            "/v5/order/create": _Route("POST", self.create_order, private=True, applies=True),
            "/v5/order/amend": _Route("POST", self.amend_order, private=True, applies=True),
            "/v5/order/cancel": _Route("POST", self.cancel_order, private=True, applies=True),
            "/v5/order/cancel-all": _Route("POST", self.cancel_all, private=True, applies=True),
            "/v5/order/realtime": _Route("GET", self.open_orders, private=True),
            "/v5/order/history": _Route("GET", self.order_history, private=True),
            "/v5/execution/list": _Route("GET", self.executions, private=True),
            "/v5/position/list": _Route("GET", self.position_list, private=True),
            "/v5/account/wallet-balance": _Route("GET", self.wallet_balance, private=True),
            "/v5/position/set-leverage": _Route("POST", self.set_leverage, private=True),
            "/v5/position/switch-mode": _Route("POST", self.switch_mode, private=True),
            "/v5/position/switch-isolated": _Route("POST", self.switch_isolated, private=True),
            "/v5/account/set-margin-mode": _Route("POST", self.set_margin_mode, private=True),
            "/v5/account/info": _Route("GET", self.account_info, private=True),
            "/v5/account/fee-rate": _Route("GET", self.fee_rate, private=True),
            "/v5/user/query-api": _Route("GET", self.query_api, private=True),
        }

    def register(self, app: web.Application) -> None:
        for path, route in self.routes.items():
            app.router.add_route(route.method, path, self.dispatch)

    # ---- dispatch -----------------------------------------------------------------------------

    def check_ip(self, request: web.BaseRequest) -> web.Response | None:
        """Count a ``/v5/...`` REST request against its IP's window: None to serve it, else the 403."""
        path = request.path
        if not path.startswith("/v5/") or path in STREAM_PATHS:
            return None
        ctx = self.ctx
        ip = request.remote or "?"
        decision = self.ip_limiter.check(ip, ctx.now_ms())
        if decision.allowed:
            return None
        if decision.ban_started:
            ctx.count("bybit.rest.ip_bans")
            log.warning(
                "bybit.rest.ip_banned ip=%s limit=%d window_ms=%d until_ms=%d",
                ip,
                self.ip_limiter.limits.requests_per_window,
                self.ip_limiter.limits.window_ms,
                decision.banned_until_ms,
            )
        ctx.count("bybit.rest.http_403")
        return web.Response(status=403, text=IP_BANNED_BODY, content_type="text/html")

    def _envelope(self, result: object, code: int = 0, message: str = "OK") -> dict[str, object]:
        return wire.envelope(result, time_ms=self.ctx.now_ms(), code=code, message=message)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        path = request.path
        route = self.routes[path]
        ctx.count("bybit.rest.requests")
        fault = faults.take_http_fault(ctx)
        if fault == "5xx":
            return _json(self._envelope({}, SERVER_ERROR, "Internal System Error."), 503)
        if fault == "timeout":
            await asyncio.sleep(ctx.faults.timeout_s)
            if request.transport is not None:
                request.transport.close()
            return _json(self._envelope({}, SERVER_TIMEOUT, "Server Timeout"), 504)
        headers: dict[str, str] = {}
        try:
            raw_query = request.rel_url.raw_query_string
            body = await request.read()
            params = self._params(route.method, raw_query, body)
            account = ""
            if route.private:
                creds = verify_rest(
                    headers=request.headers,
                    payload=raw_query.encode() if route.method == "GET" else body,
                    secret_for=self.core.secret_for,
                    now_ms=ctx.now_ms(),
                )
                account = creds.api_key
                decision = self.limiter.check(account, path, ctx.now_ms())
                headers.update(decision.headers())
                if not decision.allowed:
                    ctx.count("bybit.rest.rate_limited")
                    return _json(self._envelope({}, RATE_LIMITED, "Too many visits!"), 200, headers)
            result = route.handler(Req(params=params, account=account, now_ms=ctx.now_ms()))
        except BybitError as err:
            ctx.count("bybit.rest.rejected")
            return _json(self._envelope(err.result, err.code, err.message), 200, headers)
        except VenueReject as reject:
            ctx.count("bybit.rest.rejected")
            mapped = reject_to_error(reject.reason, reject.message)
            return _json(self._envelope(mapped.result, mapped.code, mapped.message), 200, headers)
        except Exception as exc:  # a venue bug: logged and counted, answered like Bybit's own failures
            ctx.count("bybit.rest.internal_error")
            log.exception("bybit.rest.internal_error path=%s error=%s", path, type(exc).__name__)
            return _json(self._envelope({}, SERVER_ERROR, "Internal System Error."), 200, headers)
        if route.applies and faults.take_http_5xx_after_apply(ctx):
            return _json(self._envelope({}, SERVER_ERROR, "Internal System Error."), 503, headers)
        return _json(self._envelope(result), 200, headers)

    @staticmethod
    def _params(method: str, raw_query: str, body: bytes) -> dict[str, object]:
        if method == "GET":
            try:
                return dict(parse_qsl(raw_query, keep_blank_values=True, strict_parsing=False))
            except ValueError:
                raise BybitError(PARAMS_ERROR, "params error: malformed query string") from None
        if not body.strip():
            return {}
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BybitError(PARAMS_ERROR, "params error: the request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise BybitError(PARAMS_ERROR, "params error: the request body must be a JSON object")
        return parsed

    # ---- parameter helpers --------------------------------------------------------------------

    @staticmethod
    def _linear(params: Mapping[str, object], *, default: str | None = None) -> str:
        category = _str(params, "category") or default
        if category is None:
            raise BybitError(PARAMS_ERROR, "params error: category is required")
        if category != "linear" and category not in _OTHER_CATEGORIES:
            raise BybitError(PARAMS_ERROR, "Illegal category")
        return category

    def _require_linear(self, params: Mapping[str, object]) -> None:
        if self._linear(params) != "linear":
            raise BybitError(PARAMS_ERROR, "Illegal category: this venue serves category linear only")

    def _spec(self, params: Mapping[str, object]) -> InstrumentSpec:
        symbol = _required(params, "symbol")
        spec = self.core.instruments.get(symbol)
        if spec is None:
            raise BybitError(PARAMS_ERROR, "params error: symbol invalid")
        return spec

    def _opt_spec(self, params: Mapping[str, object]) -> InstrumentSpec | None:
        return self._spec(params) if _str(params, "symbol") is not None else None

    def _symbols_of(self, params: Mapping[str, object], *, required: bool) -> list[str]:
        """Symbols selected by ``symbol``, ``baseCoin`` or ``settleCoin``."""
        spec = self._opt_spec(params)
        if spec is not None:
            return [spec.symbol]
        base = _str(params, "baseCoin")
        settle = _str(params, "settleCoin")
        if base is None and settle is None:
            if required:
                raise BybitError(PARAMS_ERROR, "params error: symbol, baseCoin or settleCoin is required")
            return sorted(self.core.instruments)
        return sorted(
            s
            for s, sp in self.core.instruments.items()
            if (base is None or sp.base_asset == base) and (settle is None or sp.quote_asset == settle)
        )

    def _fmt(self, symbol: str) -> wire.InstrumentFormat:
        return self.hub.formats[symbol]

    # ---- market -------------------------------------------------------------------------------

    def server_time(self, req: Req) -> object:
        return {"timeSecond": str(req.now_ms // 1000), "timeNano": str(req.now_ms * 1_000_000)}

    def instruments_info(self, req: Req) -> object:
        p = req.params
        category = self._linear(p)
        limit = _opt_int(p, "limit", low=1, high=1000, default=500)
        offset = _cursor(p)
        if category != "linear":
            return {"category": category, "list": [], "nextPageCursor": ""}
        symbol = _str(p, "symbol")
        status = _str(p, "status")
        base = _str(p, "baseCoin")
        entries = [
            wire.instrument_entry(spec, self._fmt(s), launch_ms=self.launch_ms)
            for s, spec in sorted(self.core.instruments.items())
            if (symbol is None or s == symbol)
            and (base is None or spec.base_asset == base)
            and (status is None or status == "Trading")
        ]
        page, cursor = _page(entries, offset, limit)
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def orderbook(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        limit = _opt_int(p, "limit", low=1, high=1000, default=25)
        u, seq, bids, asks = self.hub.book_snapshot(spec.symbol, limit)
        fmt = self._fmt(spec.symbol)
        return {
            "s": spec.symbol,
            "b": [fmt.level(price, qty) for price, qty in bids],
            "a": [fmt.level(price, qty) for price, qty in asks],
            "ts": req.now_ms,
            "u": u,
            "seq": seq,
            "cts": self.hub.book_cts.get(spec.symbol, req.now_ms),
        }

    def tickers(self, req: Req) -> object:
        p = req.params
        category = self._linear(p)
        if category != "linear":
            return {"category": category, "list": []}
        spec = self._opt_spec(p)
        symbols = [spec.symbol] if spec is not None else sorted(self.core.instruments)
        out: list[dict[str, object]] = []
        for symbol in symbols:
            entry: dict[str, object] = dict(self.hub.ticker(symbol))
            entry.update(
                deliveryTime="0", predictedDeliveryPrice="", basisRate="", deliveryFeeRate="", basis=""
            )
            out.append(entry)
        return {"category": "linear", "list": out}

    def kline(self, req: Req) -> object:
        p = req.params
        self._linear(p, default="linear")
        spec = self._spec(p)
        interval = _required(p, "interval")
        minutes = KLINE_INTERVALS.get(interval)
        if minutes is None:
            raise BybitError(
                PARAMS_ERROR,
                f"params error: interval must be one of {', '.join(KLINE_INTERVALS)}",
            )
        start = _opt_int(p, "start", low=0, high=10**14, default=-1)
        end = _opt_int(p, "end", low=0, high=10**14, default=-1)
        limit = _opt_int(p, "limit", low=1, high=1000, default=200)
        fmt = self._fmt(spec.symbol)
        rows = self.hub.bars[spec.symbol].klines(
            minutes, start=None if start < 0 else start, end=None if end < 0 else end, limit=limit
        )
        out = [
            [
                str(t),
                fmt.price(o),
                fmt.price(h),
                fmt.price(lo),
                fmt.price(c),
                fmt.qty(v),
                wire.fmt_amount(turnover),
            ]
            for t, o, h, lo, c, v, turnover in rows
        ]
        return {"category": "linear", "symbol": spec.symbol, "list": out}

    def recent_trade(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        limit = _opt_int(p, "limit", low=1, high=1000, default=500)
        fmt = self._fmt(spec.symbol)
        trades = self.core.recent_trades(spec.symbol, limit)
        out = [
            {
                "execId": wire.public_trade_entry(t, fmt, tick_direction="")["i"],
                "symbol": t.symbol,
                "price": fmt.price(t.price),
                "size": fmt.qty(t.qty),
                "side": "Buy" if t.aggressor is Side.BUY else "Sell",
                "time": str(t.ts_ms),
                "isBlockTrade": False,
                "isRPITrade": False,
            }
            for t in reversed(trades)
        ]
        return {"category": "linear", "list": out}

    # ---- orders -------------------------------------------------------------------------------

    def create_order(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        side = wire.parse_side(p.get("side"))
        order_type = _required(p, "orderType")
        if order_type not in ("Market", "Limit"):
            raise BybitError(PARAMS_ERROR, "params error: orderType invalid")
        for unsupported in ("takeProfit", "stopLoss", "tpslMode", "slippageToleranceType", "bboSideType"):
            if _str(p, unsupported) is not None and p.get(unsupported) != "0":
                raise BybitError(PARAMS_ERROR, f"params error: {unsupported} is not supported by this venue")
        reduce_only = wire.parse_bool(p.get("reduceOnly", False), "reduceOnly")
        close_on_trigger = wire.parse_bool(p.get("closeOnTrigger", False), "closeOnTrigger")
        position_side = wire.position_side_from_idx(p.get("positionIdx", 0))
        link = _str(p, "orderLinkId")
        if link is not None:
            if not _LINK_ID.match(link):
                raise BybitError(PARAMS_ERROR, "params error: orderLinkId invalid")
            if self.hub.find_order(req.account, None, link) is not None:
                raise BybitError(110072, "OrderLinkedID is duplicate")
        trigger_raw = _str(p, "triggerPrice")
        conditional = trigger_raw is not None and trigger_raw != "0"
        qty = wire.parse_decimal(p.get("qty"), "qty", allow_zero=conditional and close_on_trigger)
        tif = TimeInForce.GTC
        if order_type == "Limit":
            tif_raw = _str(p, "timeInForce") or "GTC"
            if tif_raw not in _TIF_IN:
                raise BybitError(PARAMS_ERROR, "params error: timeInForce invalid")
            tif = _TIF_IN[tif_raw]
        request_type = OrderType.LIMIT if order_type == "Limit" else OrderType.MARKET
        trigger_price: Decimal | None = None
        trigger_by = TriggerBy.LAST
        direction = 0
        if conditional:
            if order_type == "Limit":
                raise BybitError(
                    PARAMS_ERROR, "params error: conditional Limit orders are not supported by this venue"
                )
            trigger_price = wire.parse_decimal(trigger_raw, "triggerPrice")
            direction = wire.parse_int(p.get("triggerDirection"), "triggerDirection", low=1, high=2)
            by = _str(p, "triggerBy") or "LastPrice"
            if by not in ("LastPrice", "MarkPrice"):
                raise BybitError(PARAMS_ERROR, "params error: triggerBy must be LastPrice or MarkPrice")
            trigger_by = TriggerBy.LAST if by == "LastPrice" else TriggerBy.MARK
            rises = direction == 1
            # A buy that fires on a rise, or a sell on a fall, is a stop; the opposite a take-profit.
            stop = rises == (side is Side.BUY)
            request_type = OrderType.STOP_MARKET if stop else OrderType.TAKE_PROFIT_MARKET
        price: Decimal | None = None
        if order_type == "Limit":
            if _str(p, "price") is None:
                raise BybitError(PARAMS_ERROR, "params error: price is required for a Limit order")
            price = wire.parse_decimal(p.get("price"), "price")
        close_position = conditional and close_on_trigger and reduce_only and qty == _ZERO
        request = OrderRequest(
            symbol=spec.symbol,
            side=side,
            type=request_type,
            qty=None if close_position else qty,
            price=price,
            tif=tif,
            reduce_only=reduce_only and not close_position,
            close_position=close_position,
            position_side=position_side,
            client_order_id=link,
            trigger_price=trigger_price,
            trigger_by=trigger_by,
        )
        try:
            order = self.core.place_order(req.account, request)
        except VenueReject as reject:
            if reject.reason is RejectReason.POST_ONLY_WOULD_TAKE:
                order = self._accept_then_cancel(req, request, "POST_ONLY")
            elif reject.reason is RejectReason.FOK_NOT_FILLED:
                order = self._accept_then_cancel(req, request, "FOK")
            elif reject.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY:
                current = self._trigger_reference(spec.symbol, trigger_by)
                if direction == 1:
                    raise BybitError(
                        110092, f"expect Rising, but trigger_price[{trigger_raw}] <= current[{current}]"
                    ) from None
                raise BybitError(
                    110093, f"expect Falling, but trigger_price[{trigger_raw}] >= current[{current}]"
                ) from None
            else:
                raise
        return {
            "orderId": wire.order_id_str(order.order_id),
            "orderLinkId": wire.link_id(order.client_order_id, order.order_id),
        }

    def _trigger_reference(self, symbol: str, by: TriggerBy) -> str:
        mark = self.core.mark(symbol)
        fmt = self._fmt(symbol)
        return fmt.price(mark.mark_price if by is TriggerBy.MARK else mark.last_price)

    def _accept_then_cancel(self, req: Req, request: OrderRequest, reason: str) -> VenueOrder:
        """Bybit's answer to an order the core refuses for its time in force: accepted, then cancelled
        at once on the order stream."""
        spec = self.core.instruments[request.symbol]
        qty = request.qty if request.qty is not None else _ZERO
        order = VenueOrder(
            order_id=0,
            client_order_id=request.client_order_id or "",
            account=req.account,
            symbol=spec.symbol,
            side=request.side,
            type=request.type,
            tif=request.tif,
            qty=qty,
            price=request.price,
            trigger_price=None,
            trigger_by=request.trigger_by,
            reduce_only=request.reduce_only,
            close_position=False,
            position_side=request.position_side,
            status=OrderStatus.EXPIRED,
            created_ms=req.now_ms,
            updated_ms=req.now_ms,
            expire_reason=reason,
        )
        self.ctx.count(f"bybit.rest.accepted_then_cancelled.{reason.lower()}")
        return self.hub.fabricate_cancelled(order)

    def _ids(self, params: Mapping[str, object]) -> tuple[int | None, str | None]:
        raw_id = _str(params, "orderId")
        link = _str(params, "orderLinkId")
        if raw_id is None and link is None:
            raise BybitError(PARAMS_ERROR, "params error: orderId or orderLinkId is required")
        return (wire.parse_order_id(raw_id) if raw_id is not None else None), link

    def amend_order(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        order_id, link = self._ids(p)
        for unsupported in ("triggerPrice", "takeProfit", "stopLoss"):
            if _str(p, unsupported) is not None:
                raise BybitError(PARAMS_ERROR, f"params error: amending {unsupported} is not supported")
        qty = wire.parse_decimal(p["qty"], "qty") if _str(p, "qty") is not None else None
        price = wire.parse_decimal(p["price"], "price") if _str(p, "price") is not None else None
        try:
            current = self.core.get_order(req.account, spec.symbol, order_id=order_id, client_order_id=link)
            if not current.is_open:
                raise VenueReject(RejectReason.ORDER_CLOSED, "closed")
            if (qty is None or qty == current.qty) and (price is None or price == current.price):
                raise BybitError(
                    PARAMS_ERROR,
                    "The order remains unchanged as the parameters entered match the existing ones.",
                )
            order = self.core.amend_order(
                req.account,
                spec.symbol,
                order_id=current.order_id,
                qty=qty if qty != current.qty else None,
                price=price if price != current.price else None,
            )
        except VenueReject as reject:
            if reject.reason in _CLOSED_BY_CORE:
                raise BybitError(ORDER_NOT_EXISTS, "order not exists or too late to replace") from None
            raise
        return {
            "orderId": wire.order_id_str(order.order_id),
            "orderLinkId": wire.link_id(order.client_order_id, order.order_id),
        }

    def cancel_order(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        order_id, link = self._ids(p)
        try:
            order = self.core.cancel_order(req.account, spec.symbol, order_id=order_id, client_order_id=link)
        except VenueReject as reject:
            if reject.reason in _CLOSED_BY_CORE:
                raise BybitError(ORDER_NOT_EXISTS, "order not exists or too late to cancel") from None
            raise
        return {
            "orderId": wire.order_id_str(order.order_id),
            "orderLinkId": wire.link_id(order.client_order_id, order.order_id),
        }

    def cancel_all(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        symbols = self._symbols_of(p, required=True)
        order_filter = _str(p, "orderFilter")
        if order_filter not in (None, "Order", "StopOrder"):
            raise BybitError(PARAMS_ERROR, "params error: orderFilter must be Order or StopOrder")
        if _str(p, "stopOrderType") == "Stop":
            order_filter = "StopOrder"
        cancelled: list[VenueOrder] = []
        for symbol in symbols:
            if order_filter is None:
                cancelled.extend(self.core.cancel_all(req.account, symbol))
                continue
            want_conditional = order_filter == "StopOrder"
            for order in self.core.open_orders(req.account, symbol):
                if (
                    order.type is not OrderType.LIMIT and order.type is not OrderType.MARKET
                ) == want_conditional:
                    cancelled.append(self.core.cancel_order(req.account, symbol, order_id=order.order_id))
        return {
            "list": [
                {
                    "orderId": wire.order_id_str(o.order_id),
                    "orderLinkId": wire.link_id(o.client_order_id, o.order_id),
                }
                for o in cancelled
            ],
            "success": "1",
        }

    @staticmethod
    def _newest_first(orders: Iterable[VenueOrder]) -> list[VenueOrder]:
        return sorted(orders, key=lambda o: (o.created_ms, o.order_id), reverse=True)

    def _order_page(self, req: Req, orders: list[VenueOrder]) -> object:
        p = req.params
        limit = _opt_int(p, "limit", low=1, high=50, default=20)
        entries = [wire.order_entry(o, self._fmt(o.symbol), ws=False) for o in self._newest_first(orders)]
        page, cursor = _page(entries, _cursor(p), limit)
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def _order_by_id(self, req: Req, symbols: list[str]) -> list[VenueOrder]:
        order_id, link = self._ids(req.params)
        found = self.hub.find_order(req.account, order_id, link)
        if found is None:
            for symbol in symbols:
                try:
                    found = self.core.get_order(req.account, symbol, order_id=order_id, client_order_id=link)
                    break
                except VenueReject as reject:
                    if reject.reason is not RejectReason.UNKNOWN_ORDER:
                        raise
        if found is None or found.symbol not in symbols:
            return []
        if order_id is not None and link is not None and found.client_order_id != link:
            return []
        return [found]

    def open_orders(self, req: Req) -> object:
        """``/v5/order/realtime``: open orders (``openOnly=0``, the default), or open and up to 500
        recent closed ones (``openOnly=1``). Asked by ``orderId``/``orderLinkId``: that order, open
        or recently closed."""
        p = req.params
        self._require_linear(p)
        symbols = self._symbols_of(p, required=False)
        open_only = _opt_int(p, "openOnly", low=0, high=2, default=0)
        if _str(p, "orderId") is not None or _str(p, "orderLinkId") is not None:
            orders = self._order_by_id(req, symbols)
        else:
            orders = [o for s in symbols for o in self.core.open_orders(req.account, s)]
            if open_only:
                orders.extend(
                    o for o in self.hub.remembered(req.account) if not o.is_open and o.symbol in symbols
                )
        filt = _str(p, "orderFilter")
        if filt == "StopOrder":
            orders = [o for o in orders if o.type not in (OrderType.LIMIT, OrderType.MARKET)]
        elif filt == "Order":
            orders = [o for o in orders if o.type in (OrderType.LIMIT, OrderType.MARKET)]
        return self._order_page(req, orders)

    def order_history(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        symbols = set(self._symbols_of(p, required=False))
        if _str(p, "orderId") is not None or _str(p, "orderLinkId") is not None:
            orders = self._order_by_id(req, sorted(symbols))
        else:
            orders = [o for o in self.hub.remembered(req.account) if o.symbol in symbols]
        status = _str(p, "orderStatus")
        if status is not None:
            fmt_status = {
                o.order_id: wire.order_entry(o, self._fmt(o.symbol), ws=False)["orderStatus"] for o in orders
            }
            orders = [o for o in orders if fmt_status[o.order_id] == status]
        return self._order_page(req, orders)

    def executions(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._opt_spec(p)
        symbol = spec.symbol if spec is not None else None
        limit = _opt_int(p, "limit", low=1, high=100, default=50)
        order_id = wire.parse_order_id(_str(p, "orderId")) if _str(p, "orderId") is not None else None
        link = _str(p, "orderLinkId")
        exec_type = _str(p, "execType")
        start = _opt_int(p, "startTime", low=0, high=10**14, default=0)
        end = _opt_int(p, "endTime", low=0, high=10**14, default=10**14)
        entries: list[dict[str, object]] = []
        if exec_type in (None, "Trade"):
            for fill in self.core.fills(req.account, symbol, 2000):
                if order_id is not None and fill.order_id != order_id:
                    continue
                if link is not None and fill.client_order_id != link:
                    continue
                if not start <= fill.ts_ms <= end:
                    continue
                order = self.hub.find_order(req.account, fill.order_id, None)
                mark = self.hub.marks.get(fill.symbol)
                entries.append(
                    wire.execution_entry(
                        fill,
                        order,
                        self._fmt(fill.symbol),
                        mark_price=mark.mark_price if mark else None,
                        index_price=mark.index_price if mark else None,
                        ws=False,
                    )
                )
        if exec_type in (None, "Funding") and order_id is None and link is None:
            for record in self.hub.fundings.get(req.account, ()):
                ts = int(str(record["execTime"]))
                if (symbol is None or record["symbol"] == symbol) and start <= ts <= end:
                    entries.append(record)
        entries.sort(key=lambda e: int(str(e["execTime"])), reverse=True)
        page, cursor = _page(entries, _cursor(p), limit)
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    # ---- positions and account ----------------------------------------------------------------

    def _flat(self, account: str, symbol: str, side: PositionSide, now_ms: int) -> Position:
        mark = self.hub.marks.get(symbol) or self.core.mark(symbol)
        return Position(
            account=account,
            symbol=symbol,
            position_side=side,
            qty=_ZERO,
            entry_price=_ZERO,
            mark_price=mark.mark_price,
            unrealized_pnl=_ZERO,
            realized_pnl=_ZERO,
            leverage=self.core.leverage(account, symbol),
            margin_mode=self.core.margin_mode(account, symbol),
            isolated_margin=_ZERO,
            initial_margin=_ZERO,
            maint_margin=_ZERO,
            liquidation_price=_ZERO,
            notional=_ZERO,
            updated_ms=now_ms,
        )

    def position_list(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._opt_spec(p)
        settle = _str(p, "settleCoin")
        if spec is None and settle is None:
            raise BybitError(PARAMS_ERROR, "params error: symbol or settleCoin is required")
        limit = _opt_int(p, "limit", low=1, high=200, default=20)
        base = _str(p, "baseCoin")
        positions: list[Position]
        if spec is not None:
            positions = self.core.positions(req.account, spec.symbol)
            hedge = self.core.account_state(req.account).hedge_mode
            sides = (PositionSide.LONG, PositionSide.SHORT) if hedge else (PositionSide.BOTH,)
            held = {pos.position_side for pos in positions}
            positions.extend(
                self._flat(req.account, spec.symbol, s, req.now_ms) for s in sides if s not in held
            )
            positions.sort(key=lambda pos: wire.position_idx(pos.position_side))
        else:
            positions = [
                pos
                for pos in self.core.positions(req.account)
                if self.core.instruments[pos.symbol].quote_asset == settle
                and (base is None or self.core.instruments[pos.symbol].base_asset == base)
            ]
            positions.sort(key=lambda pos: (pos.symbol, wire.position_idx(pos.position_side)))
        entries = [
            wire.position_entry(pos, self._fmt(pos.symbol), ws=False, seq=pos.updated_ms) for pos in positions
        ]
        page, cursor = _page(entries, _cursor(p), limit)
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    def wallet_balance(self, req: Req) -> object:
        p = req.params
        account_type = _required(p, "accountType")
        if account_type != "UNIFIED":
            raise BybitError(PARAMS_ERROR, "accountType only support UNIFIED.")
        entry = wire.wallet_entry(self.core.account_state(req.account))
        coins = _str(p, "coin")
        if coins is not None and "USDT" not in coins.split(","):
            entry["coin"] = []
        return {"list": [entry]}

    @staticmethod
    def _leverage(params: Mapping[str, object]) -> int:
        buy = wire.parse_decimal(params.get("buyLeverage"), "buyLeverage")
        sell = wire.parse_decimal(params.get("sellLeverage"), "sellLeverage")
        if buy != sell:
            raise BybitError(PARAMS_ERROR, "params error: buyLeverage must be equal to sellLeverage")
        if buy != buy.to_integral_value():
            raise BybitError(PARAMS_ERROR, "params error: leverage must be a whole number (leverageStep 1)")
        return int(buy)

    def set_leverage(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        leverage = self._leverage(p)
        try:
            self.core.set_leverage(req.account, spec.symbol, leverage)
        except VenueReject as reject:
            raise reject_to_error(
                reject.reason, reject.message, not_modified_code=LEVERAGE_NOT_MODIFIED
            ) from None
        return {}

    def switch_mode(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        if _str(p, "symbol") is None and _str(p, "coin") is None:
            raise BybitError(PARAMS_ERROR, "params error: symbol or coin is required")
        if _str(p, "symbol") is not None:
            self._spec(p)
        mode = wire.parse_int(p.get("mode"), "mode", low=0, high=3)
        if mode not in (0, 3):
            raise BybitError(PARAMS_ERROR, "params error: mode must be 0 (one-way) or 3 (hedge)")
        try:
            self.core.set_position_mode(req.account, hedge=mode == 3)
        except VenueReject as reject:
            raise reject_to_error(
                reject.reason, reject.message, not_modified_code=POSITION_MODE_NOT_MODIFIED
            ) from None
        return {}

    def _set_margin(self, account: str, symbol: str, mode: MarginMode) -> None:
        try:
            self.core.set_margin_mode(account, symbol, mode)
        except VenueReject as reject:
            if reject.reason is RejectReason.MODE_CHANGE_POSITION_EXISTS:
                raise BybitError(
                    110024, "You have an existing position, so margin mode cannot be switched"
                ) from None
            if reject.reason is RejectReason.MODE_CHANGE_OPEN_ORDERS:
                raise BybitError(110028, "Open orders exist, so you cannot change margin mode") from None
            raise reject_to_error(
                reject.reason, reject.message, not_modified_code=MARGIN_MODE_NOT_MODIFIED
            ) from None

    def set_margin_mode(self, req: Req) -> object:
        """UTA ``set-margin-mode``: the whole account, i.e. every symbol, all or nothing."""
        wanted = _required(req.params, "setMarginMode")
        modes = {"ISOLATED_MARGIN": MarginMode.ISOLATED, "REGULAR_MARGIN": MarginMode.CROSS}
        if wanted not in modes:
            raise BybitError(
                PARAMS_ERROR, "params error: setMarginMode must be ISOLATED_MARGIN or REGULAR_MARGIN"
            )
        mode = modes[wanted]
        changed: list[tuple[str, MarginMode]] = []
        for symbol in sorted(self.core.instruments):
            before = self.core.margin_mode(req.account, symbol)
            if before is mode:
                continue
            try:
                self._set_margin(req.account, symbol, mode)
            except BybitError as err:
                for done, previous in reversed(changed):
                    self.core.set_margin_mode(req.account, done, previous)
                raise BybitError(
                    3400045,
                    "Set margin mode failed",
                    {"reasons": [{"reasonCode": str(err.code), "reasonMsg": f"{symbol}: {err.message}"}]},
                ) from None
            changed.append((symbol, before))
        return {"reasons": []}

    def switch_isolated(self, req: Req) -> object:
        """Classic accounts' per-symbol ``switch-isolated`` (tradeMode 0 cross, 1 isolated)."""
        p = req.params
        self._require_linear(p)
        spec = self._spec(p)
        trade_mode = wire.parse_int(p.get("tradeMode"), "tradeMode", low=0, high=1)
        leverage = self._leverage(p)
        self._set_margin(req.account, spec.symbol, MarginMode.ISOLATED if trade_mode else MarginMode.CROSS)
        try:
            self.core.set_leverage(req.account, spec.symbol, leverage)
        except VenueReject as reject:
            if reject.reason is not RejectReason.NOT_MODIFIED:
                raise
        return {}

    def account_info(self, req: Req) -> object:
        modes = {self.core.margin_mode(req.account, s) for s in self.core.instruments}
        margin = "ISOLATED_MARGIN" if modes == {MarginMode.ISOLATED} else "REGULAR_MARGIN"
        return {
            "marginMode": margin,
            "updatedTime": str(self.core.account_state(req.account).updated_ms),
            "unifiedMarginStatus": 5,
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        }

    def fee_rate(self, req: Req) -> object:
        p = req.params
        self._require_linear(p)
        spec = self._opt_spec(p)
        specs = (
            [spec] if spec is not None else [self.core.instruments[s] for s in sorted(self.core.instruments)]
        )
        return {
            "category": "linear",
            "list": [
                {
                    "symbol": s.symbol,
                    "baseCoin": "",
                    "takerFeeRate": wire.fmt_amount(s.taker_fee),
                    "makerFeeRate": wire.fmt_amount(s.maker_fee),
                }
                for s in specs
            ],
        }

    def query_api(self, req: Req) -> object:
        """The key's own description; the secret is never echoed (Bybit sends it masked as "")."""
        uid = zlib.crc32(req.account.encode()) % 900_000_000 + 100_000_000
        return {
            "id": str(uid),
            "note": "local venue paper account",
            "apiKey": req.account,
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": [],
                "Wallet": ["AccountTransfer"],
                "Options": [],
                "Derivatives": ["DerivativesTrade"],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
                "Earn": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -2,
            "expiredAt": "",
            "createdAt": str(self.launch_ms),
            "unified": 0,
            "uta": 1,
            "userID": uid,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT",
            "kycRegion": "",
        }
