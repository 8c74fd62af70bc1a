"""``hashmarket demo`` prints the dashboard's URL first, and the page is served while the demo
runs."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import trio


@pytest.mark.slow
async def test_the_demo_prints_the_dashboard_url_first_and_serves_it() -> None:
    command = [sys.executable, "-m", "marketplace", "demo", "--duration", "4", "--interval", "2",
               "--workers", "1", "--processes", "1"]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(60):
            buffer = b""
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, "the demo printed nothing"
                buffer += chunk
            first = buffer.split(b"\n", 1)[0].decode()
            assert first.startswith("dashboard: http://127.0.0.1:"), first
            url = first.split()[1]
            async with httpx.AsyncClient() as http:
                page = await http.get(url)
                assert page.status_code == 200
                assert "<title>hashmarket</title>" in page.text
            while await process.stdout.receive_some(4096):
                pass
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
