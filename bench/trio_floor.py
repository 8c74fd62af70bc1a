"""Benchmark: the floor under the share path, trio and the kernel alone.

A server process that does nothing with a line but answer it, written the way
``stratum/server.py`` reads and writes (one task per connection, ``wait_readable`` then one
``os.read``, every complete line answered, one ``os.write`` per read), driven by the same
client as ``bench/stratum_shares.py`` (``--connections`` miners, default 1000, strict and four
in flight). What it costs per 1,000 answered lines is what a Stratum server in this
architecture pays before it checks, charges or journals anything: the wake-up, the scheduler,
the system calls. Run:

    .venv/bin/python bench/trio_floor.py [--connections 1000] [--seconds 8] [--windows 1,4]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

from _stratum_server import environment
from stratum_shares import Driver

#: The server: answers subscribe, authorize (with a job) and every submit with fixed lines.
SERVER = r"""
import os, trio

NOTIFY = (b'{"id":null,"method":"mining.notify","params":["00000001","' + b"0" * 64
          + b'","00","00",[],"20000000","1d00ffff","65000000",true]}\n')

async def handle(stream):
    fd = stream.socket.fileno()
    pending = b""
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        out = bytearray()
        for line in lines:
            if b'"mining.submit"' in line:
                out += b'{"id":4,"result":true,"error":null}\n'
            elif b'"mining.authorize"' in line:
                out += b'{"id":2,"result":true,"error":null}\n' + NOTIFY
            else:
                out += b'{"id":1,"result":[[],"00000000",4],"error":null}\n'
        os.write(fd, bytes(out))

async def main():
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handle, 0)
        port = listeners[0].socket.getsockname()[1]
        print(f"listening 127.0.0.1:{port} sha256d", flush=True)

trio.run(main)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--windows", type=lambda text: [int(w) for w in text.split(",")], default=[1, 4]
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1].rsplit(":", 1)[1])
    driver = Driver(pids=[proc.pid], port=port, connections=args.connections)
    try:
        results = [
            driver.saturate(window=window, warmup=args.warmup, seconds=args.seconds)
            for window in args.windows
        ]
    finally:
        driver.close()
        proc.terminate()
        proc.wait(10)
    print(f"connections={args.connections} seconds={args.seconds}: trio and the kernel alone")
    for result in results:
        print(
            f"{result.mode:<24} {result.rate:>10,.0f} lines/s "
            f"{result.cpu_ms_per_1000:>6.1f} ms CPU per 1,000"
        )
    print(environment())


if __name__ == "__main__":
    main()
