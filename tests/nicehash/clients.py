"""Test clients that send NiceHash's published client code's requests, byte for byte.

Each class below is our own code (NiceHash's is not copied here), written to reproduce exactly
how one of NiceHash's published clients builds and signs its requests, so that the door is
tested against what those clients put on the wire:

- ``PythonDemo`` / ``PythonPublic``: rest-clients-demo ``python/nicehash.py`` (``private_api``
  and ``public_api``): X-Time from the local clock (``datetime.now()`` through ``mktime``, no
  sync with the server), a fresh uuid4 as X-Nonce and as X-Request-Id on every request, body
  ``json.dumps(body)`` with its default ``", "``/``": "`` separators (signed as those same
  bytes), ``Content-Type: application/json`` on every signed request, the query appended only
  when non-empty, the paths with the trailing slashes that file writes, any status but 200
  raised as an exception. Its helpers keep their names, arguments and bodies (numbers as the
  caller gives them: the demo's own ``test_bot.py`` passes floats).
- ``JsDemo``: ``javascript/api.js``: ``getTime()`` first (``/api/v2/time``, kept as an offset
  from the local clock), a 32-character base-36 nonce used as X-Nonce and X-Request-Id,
  ``X-User-Agent``/``X-User-Lang``, compact ``JSON.stringify`` bodies, the query
  ``qs.stringify``-ed, and the URL always ``path?query`` (a bare ``?`` when there is none).
- ``CSharpDemo``: ``c#/connect/connect/Api.cs``: the server time read once and reused, the
  body a compact ``JsonConvert`` of a string dictionary, X-Request-Id only where the demo asks
  for one, no query slot text when there is no query.
- ``JavaDemo``: ``java/.../Api.java``: the same, but path and query signed as Java's
  ``URI.getPath()``/``getQuery()`` return them: percent-decoded.
- ``NiceHashBot``: ``NHB3/Api.cs`` and ``ApiConnect.cs``: ``GET /api/v2/time`` before every
  signed call and its time used as X-Time, all-string bodies, ``"{error_id: -1}"`` for any
  status but 200.

Every client sends through an ``httpx.AsyncClient`` and records what it sent (``sent``).
"""

from __future__ import annotations

import hmac
import json
import random
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from time import mktime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx


@dataclass
class Sent:
    """One request as it went out."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class _Base:
    http: httpx.AsyncClient
    sent: list[Sent] = field(default_factory=list)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> httpx.Response:
        self.sent.append(Sent(method, url, dict(headers), body))
        return await self.http.request(method, url, headers=headers, content=body)


def _hmac(secret: str, parts: list[bytes | None]) -> str:
    """HMAC-SHA256 over the parts joined by zero bytes (``None``: an empty part)."""
    message = b"\x00".join(p or b"" for p in parts)
    return hmac.new(secret.encode(), message, sha256).hexdigest()


class ClientError(Exception):
    """What the Python demo raises for a status other than 200."""


# ---------------------------------------------------------------------------------- python


@dataclass
class PythonPublic(_Base):
    """rest-clients-demo's ``public_api``: unsigned GETs, trailing slashes as written there."""

    async def request(self, method: str, path: str, query: str, body: Any) -> Any:
        url = path + ("?" + query if query else "")
        data = json.dumps(body).encode() if body else None
        response = await self._send(method, url, {}, data)
        if response.status_code == 200:
            return response.json()
        raise ClientError(f"{response.status_code}: {response.reason_phrase}: {response.content!r}")

    async def buy_info(self) -> Any:
        return await self.request("GET", "/main/api/v2/public/buy/info/", "", None)

    async def get_algorithms(self) -> Any:
        return await self.request("GET", "/main/api/v2/mining/algorithms/", "", None)

    async def get_markets(self) -> Any:
        return await self.request("GET", "/main/api/v2/mining/markets/", "", None)

    async def get_currencies(self) -> Any:
        return await self.request("GET", "/main/api/v2/public/currencies/", "", None)


@dataclass
class PythonDemo(_Base):
    """rest-clients-demo's ``private_api`` (see the module doc)."""

    organisation_id: str = ""
    key: str = ""
    secret: str = ""

    @staticmethod
    def get_epoch_ms_from_now() -> int:
        now = datetime.now()
        seconds = mktime(now.timetuple()) + now.microsecond / 1000000.0
        return int(seconds * 1000)

    async def request(self, method: str, path: str, query: str, body: Any) -> Any:
        xtime = self.get_epoch_ms_from_now()
        xnonce = str(uuid.uuid4())
        parts: list[bytes | None] = [
            self.key.encode(),
            str(xtime).encode(),
            xnonce.encode(),
            None,
            self.organisation_id.encode(),
            None,
            method.encode(),
            path.encode(),
            query.encode(),
        ]
        body_json = None
        if body:
            body_json = json.dumps(body)
            parts.append(body_json.encode())
        headers = {
            "X-Time": str(xtime),
            "X-Nonce": xnonce,
            "X-Auth": self.key + ":" + _hmac(self.secret, parts),
            "Content-Type": "application/json",
            "X-Organization-Id": self.organisation_id,
            "X-Request-Id": str(uuid.uuid4()),
        }
        url = path + ("?" + query if query else "")
        data = None if body_json is None else body_json.encode("latin-1")
        response = await self._send(method, url, headers, data)
        if response.status_code == 200:
            return response.json()
        raise ClientError(f"{response.status_code}: {response.reason_phrase}: {response.content!r}")

    @staticmethod
    def algo_settings_from_response(algorithm: str, algo_response: Any) -> Any:
        setting = None
        for item in algo_response["miningAlgorithms"]:
            if item["algorithm"] == algorithm:
                setting = item
        if setting is None:
            raise ClientError("Settings for algorithm not found in algo_response parameter")
        return setting

    async def get_accounts(self) -> Any:
        return await self.request("GET", "/main/api/v2/accounting/accounts2/", "", None)

    async def get_accounts_for_currency(self, currency: str) -> Any:
        return await self.request("GET", "/main/api/v2/accounting/account2/" + currency, "", None)

    async def get_my_active_orders(self, algorithm: str, market: str, limit: int) -> Any:
        ts = self.get_epoch_ms_from_now()
        params = f"algorithm={algorithm}&market={market}&ts={ts}&limit={limit}&op=LT"
        return await self.request("GET", "/main/api/v2/hashpower/myOrders", params, None)

    async def create_pool(
        self,
        name: str,
        algorithm: str,
        pool_host: str,
        pool_port: Any,
        username: str,
        password: str,
    ) -> Any:
        pool_data = {
            "name": name,
            "algorithm": algorithm,
            "stratumHostname": pool_host,
            "stratumPort": pool_port,
            "username": username,
            "password": password,
        }
        return await self.request("POST", "/main/api/v2/pool/", "", pool_data)

    async def delete_pool(self, pool_id: str) -> Any:
        return await self.request("DELETE", "/main/api/v2/pool/" + pool_id, "", None)

    async def get_my_pools(self, page: int, size: int) -> Any:
        return await self.request("GET", "/main/api/v2/pools/", "", None)

    async def get_hashpower_orderbook(self, algorithm: str) -> Any:
        # A signed call in that file (``private_api``), to a path that needs no signature.
        path = "/main/api/v2/hashpower/orderBook/"
        return await self.request("GET", path, "algorithm=" + algorithm, None)

    async def create_hashpower_order(
        self,
        market: str,
        type: str,
        algorithm: str,
        price: Any,
        limit: Any,
        amount: Any,
        pool_id: str,
        algo_response: Any,
    ) -> Any:
        setting = self.algo_settings_from_response(algorithm, algo_response)
        order_data = {
            "market": market,
            "algorithm": algorithm,
            "amount": amount,
            "price": price,
            "limit": limit,
            "poolId": pool_id,
            "type": type,
            "marketFactor": setting["marketFactor"],
            "displayMarketFactor": setting["displayMarketFactor"],
        }
        return await self.request("POST", "/main/api/v2/hashpower/order/", "", order_data)

    async def cancel_hashpower_order(self, order_id: str) -> Any:
        return await self.request("DELETE", "/main/api/v2/hashpower/order/" + order_id, "", None)

    async def refill_hashpower_order(self, order_id: str, amount: Any) -> Any:
        path = "/main/api/v2/hashpower/order/" + order_id + "/refill/"
        return await self.request("POST", path, "", {"amount": amount})

    async def _update(
        self, order_id: str, data: dict[str, Any], algorithm: str, algo_response: Any
    ) -> Any:
        """updatePriceAndLimit with ``data`` then the algorithm's two market factors, in the
        order that file writes its bodies."""
        setting = self.algo_settings_from_response(algorithm, algo_response)
        body = {
            **data,
            "marketFactor": setting["marketFactor"],
            "displayMarketFactor": setting["displayMarketFactor"],
        }
        path = "/main/api/v2/hashpower/order/" + order_id + "/updatePriceAndLimit/"
        return await self.request("POST", path, "", body)

    async def set_price_hashpower_order(
        self, order_id: str, price: Any, algorithm: str, algo_response: Any
    ) -> Any:
        return await self._update(order_id, {"price": price}, algorithm, algo_response)

    async def set_limit_hashpower_order(
        self, order_id: str, limit: Any, algorithm: str, algo_response: Any
    ) -> Any:
        return await self._update(order_id, {"limit": limit}, algorithm, algo_response)

    async def set_price_and_limit_hashpower_order(
        self, order_id: str, price: Any, limit: Any, algorithm: str, algo_response: Any
    ) -> Any:
        data = {"price": price, "limit": limit}
        return await self._update(order_id, data, algorithm, algo_response)


# ---------------------------------------------------------------------------------- javascript


def _qs_stringify(query: dict[str, Any]) -> str:
    """``qs.stringify`` of a flat object: RFC 3986 escapes, insertion order."""
    return "&".join(
        f"{quote(str(k), safe='-_.~')}={quote(str(v), safe='-_.~')}" for k, v in query.items()
    )


def _qs_parse(text: str) -> dict[str, str]:
    """``qs.parse`` of a flat query: ``+`` is a space, then percent-decoded."""
    pairs = (p.partition("=") for p in text.split("&") if p)
    return {unquote(k.replace("+", " ")): unquote(v.replace("+", " ")) for k, _, v in pairs}


def _js_nonce() -> str:
    alphabet = string.digits + string.ascii_lowercase
    return "".join(random.choice(alphabet) for _ in range(32))


@dataclass
class JsDemo(_Base):
    """rest-clients-demo's ``javascript/api.js`` (see the module doc)."""

    org: str = ""
    key: str = ""
    secret: str = ""
    local_time_diff: int | None = None

    async def get_time(self) -> Any:
        response = await self._send("GET", "/api/v2/time", {}, None)
        answer = response.json()
        self.local_time_diff = answer["serverTime"] - int(time.time() * 1000)
        return answer

    async def api_call(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        if self.local_time_diff is None:
            raise ClientError("Get server time first .getTime()")
        path_only, _, path_query = path.partition("?")
        query = dict(query or {})
        if path_query:
            query = {**_qs_parse(path_query), **query}
        nonce = _js_nonce()
        timestamp = str(int(time.time() * 1000) + self.local_time_diff)
        query_text = _qs_stringify(query)
        body_text = None if body is None else _compact(body)
        parts: list[bytes | None] = [
            self.key.encode(),
            timestamp.encode(),
            nonce.encode(),
            None,
            self.org.encode(),
            None,
            method.encode(),
            path_only.encode(),
            query_text.encode(),
        ]
        if body_text is not None:
            parts.append(body_text.encode())
        headers = {
            "X-Request-Id": nonce,
            "X-User-Agent": "NHNodeClient",
            "X-Time": timestamp,
            "X-Nonce": nonce,
            "X-User-Lang": "en",
            "X-Organization-Id": self.org,
            "X-Auth": self.key + ":" + _hmac(self.secret, parts),
        }
        if isinstance(body, dict):
            headers["Content-Type"] = "application/json"
        data = None if body_text is None else body_text.encode()
        response = await self._send(method, f"{path_only}?{query_text}", headers, data)
        return response.json()

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.api_call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.api_call("POST", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.api_call("DELETE", path, **kw)


# ---------------------------------------------------------------------------------- C#, Java


def _compact(data: Any) -> str:
    """``JSON.stringify`` / ``JsonConvert.SerializeObject`` of a ``Dictionary<string, string>``
    / Gson's ``JsonObject.toString()``: compact, in insertion order, non-ASCII as it is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass
class CSharpDemo(_Base):
    """rest-clients-demo's ``c#/connect/connect/Api.cs`` (see the module doc). ``decoded``:
    sign the path and query decoded, as the Java demo's ``URI`` gives them."""

    org_id: str = ""
    api_key: str = ""
    api_secret: str = ""
    decoded: bool = False

    def _digest(self, time_: str, nonce: str, method: str, url: str, body: str | None) -> str:
        parsed = urlsplit(url)
        path, query = parsed.path, parsed.query if "?" in url else None
        if self.decoded:
            path = unquote(path)
            query = None if query is None else unquote(query)
        parts: list[bytes | None] = [
            self.api_key.encode("latin-1"),
            time_.encode("latin-1"),
            nonce.encode("latin-1"),
            None,
            self.org_id.encode("latin-1"),
            None,
            method.encode("latin-1"),
            path.encode("latin-1"),
            None if query is None else query.encode("latin-1"),
        ]
        if body:
            parts.append(body.encode())
        return _hmac(self.api_secret, parts)

    def _signed(self, time_: str, method: str, url: str, body: str | None) -> dict[str, str]:
        nonce = str(uuid.uuid4())
        return {
            "X-Time": time_,
            "X-Nonce": nonce,
            "X-Auth": self.api_key + ":" + self._digest(time_, nonce, method, url, body),
            "X-Organization-Id": self.org_id,
        }

    async def get(self, url: str, auth: bool = False, time_: str | None = None) -> str:
        headers = {} if not auth else self._signed(time_ or "", "GET", url, None)
        response = await self._send("GET", url, headers, None)
        return response.text

    async def post(
        self, url: str, payload: dict[str, str] | None, time_: str, request_id: bool
    ) -> str:
        body = None if payload is None else _compact(payload)
        headers = {"Accept": "application/json", "Content-type": "application/json"}
        headers.update(self._signed(time_, "POST", url, body))
        if request_id:
            headers["X-Request-Id"] = str(uuid.uuid4())
        data = None if body is None else body.encode()
        response = await self._send("POST", url, headers, data)
        return response.text

    async def delete(self, url: str, time_: str, request_id: bool) -> str:
        headers = self._signed(time_, "DELETE", url, None)
        if request_id:
            headers["X-Request-Id"] = str(uuid.uuid4())
        response = await self._send("DELETE", url, headers, None)
        return response.text


def JavaDemo(http: httpx.AsyncClient, *, org_id: str, api_key: str, api_secret: str) -> CSharpDemo:
    """rest-clients-demo's ``java/.../Api.java``: the C# demo's requests, signed over the
    decoded path and query."""
    return CSharpDemo(http, org_id=org_id, api_key=api_key, api_secret=api_secret, decoded=True)


# ---------------------------------------------------------------------------------- NiceHashBot


@dataclass
class NiceHashBot(_Base):
    """NiceHashBot's ``NHB3/Api.cs`` + ``ApiConnect.cs`` requests (see the module doc)."""

    org_id: str = ""
    api_key: str = ""
    api_secret: str = ""
    time: str = ""
    signer: CSharpDemo | None = None
    algorithms: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.signer = CSharpDemo(
            self.http, org_id=self.org_id, api_key=self.api_key, api_secret=self.api_secret
        )
        self.signer.sent = self.sent

    async def srvr_time(self) -> str:
        text = await self.get("/api/v2/time", auth=False)
        answer = json.loads(text)
        if answer.get("error_id") is None:
            self.time = str(answer["serverTime"])
            return self.time
        return "0"

    async def get(self, url: str, auth: bool) -> str:
        assert self.signer is not None
        headers = {}
        if auth:
            headers = self.signer._signed(await self.srvr_time(), "GET", url, None)
        response = await self._send("GET", url, headers, None)
        return response.text if response.status_code == 200 else "{error_id: -1}"

    async def post(self, url: str, payload: dict[str, str], request_id: bool) -> str:
        assert self.signer is not None
        time_ = await self.srvr_time()
        body = _compact(payload)
        headers = {"Accept": "application/json", "Content-type": "application/json"}
        headers.update(self.signer._signed(time_, "POST", url, body))
        if request_id:
            headers["X-Request-Id"] = str(uuid.uuid4())
        response = await self._send("POST", url, headers, body.encode())
        return response.text if response.status_code == 200 else "{error_id: -1}"

    async def delete(self, url: str, request_id: bool) -> str:
        assert self.signer is not None
        headers = self.signer._signed(await self.srvr_time(), "DELETE", url, None)
        if request_id:
            headers["X-Request-Id"] = str(uuid.uuid4())
        response = await self._send("DELETE", url, headers, None)
        return response.text if response.status_code == 200 else "{error_id: -1}"

    # ApiConnect.cs: what the bot does with those three calls.

    async def setup(self) -> tuple[list[Any], list[Any]]:
        """Read the algorithm settings and the buy settings (unsigned)."""
        algorithms = json.loads(await self.get("/main/api/v2/mining/algorithms", auth=False))
        buy = json.loads(await self.get("/main/api/v2/public/buy/info", auth=False))
        self.algorithms = algorithms.get("miningAlgorithms", [])
        return self.algorithms, buy.get("miningAlgorithms", [])

    def get_algo(self, algo: str) -> dict[str, Any]:
        for entry in self.algorithms:
            if str(entry["algorithm"]) == algo:
                return dict(entry)
        return {}

    async def get_balance(self, currency: str) -> dict[str, Any] | None:
        answer = json.loads(await self.get("/main/api/v2/accounting/accounts2", auth=True))
        for entry in answer.get("currencies", []):
            if entry["currency"] == currency:
                return dict(entry)
        return None

    async def get_market_for_algo(self, algorithm: str) -> list[Any]:
        text = await self.get("/main/api/v2/public/orders/active2?algorithm=" + algorithm, False)
        answer: Any = json.loads(text) if text != "{error_id: -1}" else {"error_id": -1}
        return [] if answer.get("error_id") is not None else list(answer["list"])

    async def get_pools(self) -> list[Any]:
        answer = json.loads(await self.get("/main/api/v2/pools?size=1000", auth=True))
        return list(answer["list"]) if "list" in answer else []

    async def add_pool(
        self, name: str, algorithm: str, url: str, port: str, username: str, password: str
    ) -> str:
        pool = {
            "algorithm": algorithm,
            "name": name,
            "username": username,
            "password": password,
            "stratumHostname": url,
            "stratumPort": port,
        }
        return await self.post("/main/api/v2/pool", pool, request_id=False)

    async def edit_pool(
        self, name: str, algorithm: str, url: str, port: str, username: str, password: str, id: str
    ) -> str:
        pool = {
            "id": id,
            "algorithm": algorithm,
            "name": name,
            "username": username,
            "password": password,
            "stratumHostname": url,
            "stratumPort": port,
        }
        return await self.post("/main/api/v2/pool", pool, request_id=False)

    async def delete_pool(self, id: str) -> str:
        return await self.delete("/main/api/v2/pool/" + id, request_id=False)

    async def get_orders(self) -> list[Any]:
        ts = int(self.time) + 24 * 60 * 1000  # as the bot does, "in case of stratum refresh"
        url = f"/main/api/v2/hashpower/myOrders?active=true&op=LE&limit=1000&ts={ts}"
        answer = json.loads(await self.get(url, auth=True))
        return list(answer["list"]) if "list" in answer else []

    async def create_order(
        self, algo: str, market: str, type: str, pool: str, price: str, limit: str, amount: str
    ) -> dict[str, Any]:
        sel = self.get_algo(algo)
        order = {
            "algorithm": algo,
            "amount": amount,
            "displayMarketFactor": str(sel["displayMarketFactor"]),
            "displayPriceFactor": str(sel["displayPriceFactor"]),
            "limit": limit,
            "market": market,
            "marketFactor": str(sel["marketFactor"]),
            "poolId": pool,
            "price": price,
            "priceFactor": str(sel["priceFactor"]),
            "type": type,
        }
        return self._object(await self.post("/main/api/v2/hashpower/order", order, True))

    async def refill_order(self, id: str, amount: str) -> dict[str, Any]:
        url = "/main/api/v2/hashpower/order/" + id + "/refill"
        return self._object(await self.post(url, {"amount": amount}, True))

    async def update_order(self, algo: str, id: str, price: str, limit: str) -> dict[str, Any]:
        sel = self.get_algo(algo)
        order = {
            "price": price,
            "limit": limit,
            "displayMarketFactor": str(sel["displayMarketFactor"]),
            "marketFactor": str(sel["marketFactor"]),
            "displayPriceFactor": str(sel["displayPriceFactor"]),
            "priceFactor": str(sel["priceFactor"]),
        }
        url = "/main/api/v2/hashpower/order/" + id + "/updatePriceAndLimit"
        return self._object(await self.post(url, order, True))

    async def cancel_order(self, id: str) -> dict[str, Any]:
        return self._object(await self.delete("/main/api/v2/hashpower/order/" + id, True))

    @staticmethod
    def _object(text: str) -> dict[str, Any]:
        """The bot's reading of an answer: the object, or ``{}`` for an error."""
        if text == "{error_id: -1}":
            return {}
        answer = json.loads(text)
        return {} if answer.get("error_id") is not None else dict(answer)
