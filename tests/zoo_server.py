"""A zoo-style tarball server on 127.0.0.1 for tests: counts requests, can misbehave."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from pathlib import Path


def make_tarball(stem: str, pipeline_config: str, checkpoint_dir: Path | None = None) -> bytes:
    """A .tar.gz laid out like the zoo's: <stem>/pipeline.config, <stem>/checkpoint/ckpt-0.*.

    Without checkpoint_dir the checkpoint files are placeholders (enough for the
    cache and config tests, not for restoring weights).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{stem}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("pipeline.config", pipeline_config.encode())
        if checkpoint_dir is None:
            add("checkpoint/ckpt-0.index", b"index")
            add("checkpoint/ckpt-0.data-00000-of-00001", b"data")
        else:
            for f in sorted(checkpoint_dir.iterdir()):
                add(f"checkpoint/{f.name}", f.read_bytes())
    return buf.getvalue()


class ZooServer:
    """Serves {path: bytes}; mode "ok", "truncate" (close mid-body) or "stall" (never answer, until stop())."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.mode = "ok"
        self.requests: list[str] = []
        self.stopping = threading.Event()  # set by stop(): releases the stalled requests
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                if server.mode == "stall":
                    server.stopping.wait()  # the connection stays open, silent, as long as the server runs
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if server.mode == "ok" else body[: len(body) // 2])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
