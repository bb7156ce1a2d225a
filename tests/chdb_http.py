"""A stand-in ClickHouse server for tests: the real engine (chDB) behind ClickHouse's HTTP interface.

No modern ClickHouse server can be installed where osrewind is developed, so the `--db http://...`
path (clickhouse-connect's HTTP client, osrewind's server code paths) is tested against this: every
statement is run by the same ClickHouse engine a server has, only the transport is ours. It speaks
what clickhouse-connect uses of the protocol: the statement in the `query` parameter or the body,
`param_NAME` query parameters, `FORMAT` in the statement or `default_format`, data inserts in the
body (chunked, compressed or not), and errors as HTTP 500 with `X-ClickHouse-Exception-Code`.

Usage: python tests/chdb_http.py STORE_DIR PORT   (serves until killed; prints "ready" when it listens)
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.I)
_CODE = re.compile(r"Code: (\d+)")


class Engine:
    def __init__(self, path: str) -> None:
        import chdb

        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.scratch = tempfile.mkdtemp(prefix="chdb-http-")

    def run(self, sql: str, fmt: str, params: dict[str, str]) -> bytes:
        with self.lock:
            result = self.conn.query(sql, fmt, params=params) if params else self.conn.query(sql, fmt)
        return result.bytes() if result is not None else b""

    def insert(self, statement: str, data: bytes, params: dict[str, str]) -> None:
        m = _FORMAT.search(statement)
        if not m:
            raise ValueError("Code: 62. DB::Exception: an insert with data needs FORMAT")
        path = os.path.join(self.scratch, f"{uuid.uuid4()}.data")
        with open(path, "wb") as f:
            f.write(data)
        try:
            self.run(f"{statement[:m.start()]} FROM INFILE '{path}' FORMAT {m.group(1)}", "TabSeparated", params)
        finally:
            os.unlink(path)


def _decompress(data: bytes, encoding: str) -> bytes:
    if not encoding:
        return data
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    if encoding == "gzip":
        import gzip

        return gzip.decompress(data)
    raise ValueError(f"Code: 1. DB::Exception: unsupported Content-Encoding {encoding}")


def handler_for(engine: Engine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:   # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    out += self.rfile.read(size)
                    self.rfile.readline()
                data = bytes(out)
            else:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return _decompress(data, self.headers.get("Content-Encoding", "").lower())

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the HTTP method
            if urlsplit(self.path).path == "/ping":
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain"})
                return
            self.do_POST()

        def do_POST(self) -> None:  # noqa: N802 - the HTTP method
            url = urlsplit(self.path)
            args = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self._body() if self.command == "POST" else b""
            params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
            query = args.get("query", "")
            headers = {"X-ClickHouse-Query-Id": args.get("query_id", str(uuid.uuid4())), "X-ClickHouse-Timezone": "UTC",
                       "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})}
            try:
                if query and body:          # a statement with its data
                    engine.insert(query, body, params)
                    self._reply(200, b"", headers)
                    return
                sql = query or body.decode()
                m = _FORMAT.search(sql)
                fmt = m.group(1) if m else args.get("default_format", "TabSeparated")
                out = engine.run(sql[:m.start()] if m else sql, fmt, params)
                headers["X-ClickHouse-Format"] = fmt
                self._reply(200, out, {**headers, "Content-Type": "application/octet-stream"})
            except Exception as exc:  # noqa: BLE001 - the engine's error, as a server sends it
                text = str(exc)
                code = _CODE.search(text)
                self._reply(500, text.encode(), {**headers, "X-ClickHouse-Exception-Code": code.group(1) if code else "1",
                                                 "Content-Type": "text/plain"})

    return Handler


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(Engine(path)))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
