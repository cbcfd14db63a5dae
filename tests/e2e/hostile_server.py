"""A hostile target for the fault-tolerance tests: ``python hostile_server.py MODE PORT [LOG]``, 127.0.0.1 only.

It answers ``GET /api/tags``, ``/api/version`` and ``/v1/models`` like Ollama (so a preflight passes)
unless the mode is hostile there too, and is hostile on the generation endpoints (``POST``), one mode
per case. ``LOG`` (optional) gets one JSON line per request it saw: method, path, port, authorization.
Every mode is bounded: endless modes stop after ``LIMIT_S`` seconds per connection.

Modes: silent, forever, bigline, garbage (the first four of issue 7); fastheaders (endless header
lines as fast as the socket takes them), faststream (NDJSON content lines as fast as possible),
badcount (done chunk with eval_count "n/a" / negative, usage.completion_tokens "two"), echo401 (401
whose body echoes the Authorization header), ssh (an SSH banner instead of HTTP), closeheaders
(200 headers with a Content-Length, then the connection closes), redirect (every request gets a 302
to a second listener, "the other origin", on an OS-chosen port; what reaches it is logged with port -1),
htmlok (200 text/html page on POST), retry429 (429 with Retry-After: 1 on POST).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

MODE, PORT = sys.argv[1], int(sys.argv[2])
LOG = sys.argv[3] if len(sys.argv) > 3 else None
LIMIT_S = 60.0
MODEL = "llama3.2:latest"
TAGS = json.dumps({"models": [{"name": MODEL, "model": MODEL}]}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
other_port = 0


def log(entry: dict) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def reply(status: str, body: bytes, content_type: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def chunk(content: str, **fields) -> bytes:
    return json.dumps({"model": MODEL, "message": {"role": "assistant", "content": content}, "done": False,
                       **fields}).encode() + b"\n"


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


counter = 0


async def handle(reader, writer, port=None):
    global counter
    port = port or PORT
    started = time.monotonic()
    try:
        if MODE == "ssh" and port == PORT:
            writer.write(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
            await writer.drain()
            await asyncio.sleep(2)
            return
        while True:
            method, path, headers, body = await read_request(reader)
            log({"method": method, "path": path, "port": port, "authorization": headers.get("authorization")})
            if port != PORT:  # the redirect's other origin: answers like Ollama, and logs what reached it
                writer.write(reply("200 OK", TAGS if path.endswith("/api/tags") else b'{"version": "0.0.0"}'))
                await writer.drain()
                continue
            if MODE == "redirect":
                writer.write(reply("302 Found", b"", extra=f"Location: http://127.0.0.1:{other_port}{path}\r\n"))
                await writer.drain()
                continue
            if method == "GET":
                body = {"/api/tags": TAGS, "/v1/models": MODELS}.get(path, b'{"version": "0.0.0-hostile"}')
                writer.write(reply("200 OK", body))
                await writer.drain()
                continue
            counter += 1
            if MODE == "silent":
                await asyncio.sleep(LIMIT_S)
                return
            if MODE == "forever":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
                while time.monotonic() - started < LIMIT_S:
                    writer.write(chunk("la "))
                    await writer.drain()
                    await asyncio.sleep(0.05)
                return
            if MODE == "bigline":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
                big = b'{"message": {"content": "' + b"x" * (5 * 1024 * 1024) + b'"}, "done": false}\n'
                for i in range(0, len(big), 65536):
                    writer.write(big[i:i + 65536])
                    await writer.drain()
                return
            if MODE == "garbage":
                writer.write(reply("200 OK", b"<html>\x00\x01 garbage, not json at all }{\n", "application/x-ndjson"))
                await writer.drain()
                continue
            if MODE == "fastheaders":
                writer.write(b"HTTP/1.1 200 OK\r\n")
                line = b"X-Filler: " + b"h" * 1000 + b"\r\n"
                block = line * 64
                while time.monotonic() - started < LIMIT_S:
                    writer.write(block)
                    await writer.drain()
                return
            if MODE == "faststream":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
                block = chunk("la ") * 1000
                while time.monotonic() - started < LIMIT_S:
                    writer.write(block)
                    await writer.drain()
                return
            if MODE == "badcount":
                odd = counter % 2
                if path == "/v1/chat/completions":
                    parts = [sse({"choices": [{"index": 0, "delta": {"content": w}}]}) for w in ("one ", "two ", "three")]
                    parts.append(sse({"choices": [], "usage": {"completion_tokens": "two" if odd else -5,
                                                               "prompt_tokens": "x"}}))
                    body = b"".join(parts) + b"data: [DONE]\n\n"
                    writer.write(reply("200 OK", body, "text/event-stream"))
                else:
                    count = "n/a" if odd else -8829929
                    done = json.dumps({"model": MODEL, "message": {"role": "assistant", "content": ""}, "done": True,
                                       "done_reason": "stop", "eval_count": count, "prompt_eval_count": "many",
                                       "total_duration": 1000000, "eval_duration": 500000}).encode() + b"\n"
                    body = chunk("one ") + chunk("two ") + chunk("three") + done
                    writer.write(reply("200 OK", body, "application/x-ndjson"))
                await writer.drain()
                continue
            if MODE == "echo401":
                said = headers.get("authorization", "none")
                body = json.dumps({"error": f"invalid credentials: {said} is not a known key"}).encode()
                writer.write(reply("401 Unauthorized", body))
                await writer.drain()
                continue
            if MODE == "closeheaders":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
                await writer.drain()
                return
            if MODE == "htmlok":
                writer.write(reply("200 OK", b"<html><body>login page</body></html>", "text/html"))
                await writer.drain()
                continue
            if MODE == "retry429":
                writer.write(reply("429 Too Many Requests", b'{"error": "slow down"}', extra="Retry-After: 1\r\n"))
                await writer.drain()
                continue
            raise SystemExit(f"unknown mode {MODE}")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    global other_port
    other = await asyncio.start_server(lambda r, w: handle(r, w, port=-1), "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    print(f"listening {PORT} other {other_port}", flush=True)
    async with server, other:
        await asyncio.gather(server.serve_forever(), other.serve_forever())


asyncio.run(main())
