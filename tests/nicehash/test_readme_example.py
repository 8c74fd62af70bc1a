"""The README's worked example with NiceHash's Python client ("Pointing a NiceHash bot at
hashmarket") run as it is written, against a whole node and a standalone pool: ``import
nicehash`` finds our reproduction of that file (``clients.PythonPublic``/``PythonDemo``, the same
requests byte for byte) behind blocking calls like the original's, the script runs in a thread,
and what it prints and what the JSON-RPC door then sees are what the README says."""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from marketplace.config import NodeConfig
from tests.proxy.test_standalone_upstream import start_standalone

from .clients import PythonDemo, PythonPublic
from .helpers import nicehash_node

README = Path(__file__).parents[2] / "README.md"
#: The pool port of the example's ``hashmarket pool-server --port 3340``.
EXAMPLE_POOL_PORT = "3340"


def worked_example() -> str:
    """The first Python block after the README's "A worked example" line."""
    text = README.read_text()
    start = text.index("A worked example with NiceHash's own Python client")
    found = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert found is not None
    return found.group(1)


class Blocking:
    """An async client's helpers as blocking calls made from a thread trio started, as the
    original (over ``requests``) makes them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(found):
            return found
        return lambda *args: trio.from_thread.run(partial(found, *args))


def nicehash_module(http: Any, host: str) -> types.ModuleType:
    """A ``nicehash`` module whose ``public_api``/``private_api`` take the original's
    arguments and send through ``http`` (the node's client), for the ``host`` given."""

    def public_api(given: str) -> Blocking:
        assert given == host
        return Blocking(PythonPublic(http))

    def private_api(given: str, organisation_id: str, key: str, secret: str) -> Blocking:
        assert given == host
        return Blocking(PythonDemo(http, organisation_id=organisation_id, key=key, secret=secret))

    module = types.ModuleType("nicehash")
    module.public_api = public_api  # type: ignore[attr-defined]
    module.private_api = private_api  # type: ignore[attr-defined]
    return module


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_readme_example_runs_as_written(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = worked_example()
    host = f"http://127.0.0.1:{NodeConfig().api_port}"  # the README's: the default API port
    assert f'host = "{host}"' in code
    assert EXAMPLE_POOL_PORT in code
    pool_server, _ = await start_standalone(nursery)
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()  # the README's account create + deposit 1.0
        for placeholder, value in (
            ("<key_id>", alice.creds.key_id),
            ("<secret>", alice.creds.secret),
        ):
            assert placeholder in code
            code = code.replace(placeholder, value)
        code = code.replace(EXAMPLE_POOL_PORT, str(pool_server.port))
        monkeypatch.setitem(sys.modules, "nicehash", nicehash_module(nh.http, host))
        printed: list[str] = []
        namespace: dict[str, Any] = {
            "print": lambda *args: printed.append(" ".join(map(str, args)))
        }
        run: Callable[[], None] = partial(exec, compile(code, "README.md", "exec"), namespace)
        with trio.fail_after(30):
            await trio.to_thread.run_sync(run)
        # What the README's comments say it prints.
        assert printed == ["1.00000000", "ACTIVE"]
        order_id = namespace["order"]["id"]
        with trio.fail_after(10):
            seen = await alice.rpc.get_order(order_id)
            pools = await alice.rpc.list_pools()
            balance = await alice.rpc.balance()
        assert (seen.status, seen.price, seen.limit, seen.amount) == (
            "cancelled",
            "0.01100000",
            "2.500000",
            "0.01500000",
        )
        assert seen.pool_id == namespace["pool"]["id"]
        assert pools == []
        assert balance.available == "1.00000000"
