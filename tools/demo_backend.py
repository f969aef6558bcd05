#!/usr/bin/python3
"""A tiny HTTP/1.1 backend for trying weir: tools/demo_backend.py PORT [HOST].

Answers every request with a short text body that names this backend and
echoes the method and target, so round robin across two of them is visible
with curl. Keepalive (HTTP/1.1 by default, HTTP/1.0 with keep-alive), request
bodies by Content-Length or chunked are read and discarded. Not a web server:
a demo and test peer only.
"""

import asyncio
import signal
import sys

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    pass


async def read_body(reader, headers):
    te = headers.get("transfer-encoding")
    if te is not None:
        if te.strip().lower() != "chunked":
            raise BadRequest("unsupported transfer-encoding")
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            await reader.readexactly(size + 2)
    cl = headers.get("content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise BadRequest("bad content-length")
        n = int(cl)
        while n > 0:
            chunk = await reader.read(min(n, 65536))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", n)
            n -= len(chunk)


def response(status, reason, body, keep_alive, head_only, version):
    lines = [
        f"{version} {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return out if head_only else out + body


async def handle(reader, writer, name):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(response(431, "Request Header Fields Too Large", b"", False,
                                      False, "HTTP/1.1"))
                break
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                writer.write(response(400, "Bad Request", b"bad request line\n", False, False,
                                      "HTTP/1.1"))
                break
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                if not line:
                    continue
                k, sep, v = line.partition(":")
                if not sep:
                    raise BadRequest("bad header line")
                headers[k.strip().lower()] = v.strip()
            conn = headers.get("connection", "").lower()
            if version == "HTTP/1.0":
                keep_alive = "keep-alive" in conn
            else:
                keep_alive = "close" not in conn
            await read_body(reader, headers)
            body = (f"{name}: {method} {target}\n").encode()
            writer.write(response(200, "OK", body, keep_alive, method == "HEAD", version))
            await writer.drain()
            if not keep_alive:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    except (BadRequest, ValueError):
        writer.write(response(400, "Bad Request", b"bad request\n", False, False, "HTTP/1.1"))
    finally:
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def main():
    if len(sys.argv) < 2:
        print("usage: demo_backend.py PORT [HOST]", file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    name = f"demo backend {host}:{port}"
    server = await asyncio.start_server(lambda r, w: handle(r, w, name), host, port,
                                        limit=MAX_HEAD, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"{name} listening", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
