"""A webhook receiver for the benchmark's production rows: answers every
request with 204 on keep-alive connections, as an app's endpoint that
takes each event would. It reads each request's headers and its
Content-Length body and checks nothing else (the signatures are checked
by the events suites, not here).

Usage: webhook_sink.py PORT_FILE
Listens on a free loopback port, writes it to PORT_FILE, and on SIGTERM
prints how many requests it answered.
"""

import asyncio
import signal
import sys

answered = 0
REPLY = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


async def serve(reader, writer):
    global answered
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            writer.write(REPLY)
            answered += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(sys.argv[1], "w") as f:
        f.write(str(port))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(f"webhook sink answered {answered} requests", file=sys.stderr)


asyncio.run(main())
