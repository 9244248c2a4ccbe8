"""A TCP forwarder on 127.0.0.1 that holds every byte back for a fixed time, each way.

This machine's kernel has no `netem`, so a link with a round trip of a wide-area
network is made in user space: every chunk read from one side is written to the other
`--delay-ms` later, in order, as netem's plain delay does. A round trip through it
therefore takes twice the delay, plus the loop's timer granularity (about a millisecond:
asyncio waits with epoll, whose timeout is whole milliseconds). Listens and connects on
127.0.0.1 only. Run it as its own process, so its work does not share a GIL with what
is measured; it prints the port it listens on, then serves until killed.

Usage: python bench/latency_proxy.py --target-port PORT --delay-ms 1
"""

from __future__ import annotations

import argparse
import asyncio
import sys

HOST = "127.0.0.1"


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def take() -> None:
        try:
            while data := await reader.read(1 << 16):
                held.put_nowait((loop.time() + delay, data))
        finally:  # the end, a reset too: passed on after what came before it
            held.put_nowait((0.0, b""))

    async def give() -> None:
        while True:
            due, data = await held.get()
            if not data:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(take(), give())
    except ConnectionError:
        pass  # a side reset: the other side is closed below
    finally:
        writer.close()


async def _serve(target_port: int, delay: float) -> None:
    async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_forward(client_r, server_w, delay),
                             _forward(server_r, client_w, delay))

    server = await asyncio.start_server(accept, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True, help="one way")
    args = parser.parse_args()
    asyncio.run(_serve(args.target_port, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
