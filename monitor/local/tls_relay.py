"""A TLS-terminating TCP relay, for the embedded broker (local runs and tests only).

The pinned Tansu build cannot serve TLS itself (``--cert`` and ``--key`` are mutually exclusive
there, see ``monitor.local.tansu``), so ``EmbeddedBroker(tls=...)`` puts this relay in front of a
plaintext listener and clients only ever see TLS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import ssl
import threading
from pathlib import Path

__all__ = ["TlsFront"]

_log = logging.getLogger(__name__)


class TlsFront:
    """A TLS-terminating TCP relay on host:port in front of a plaintext listener on upstream.

    Runs its own event loop on a daemon thread of this process. With ``client_ca`` it requires
    a client certificate signed by that CA (mutual TLS), which Tansu cannot do itself.
    """

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
    ) -> None:
        self._host, self._port, self._upstream_port = host, port, upstream_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self._context.load_verify_locations(cafile=str(client_ca))
            self._context.verify_mode = ssl.CERT_REQUIRED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Listen; returns once the port accepts connections. Raises OSError if it cannot."""
        loop = asyncio.new_event_loop()
        # A client that rejects our certificate (the point of some tests) is not an error here.
        loop.set_exception_handler(lambda _loop, ctx: _log.debug("TLS front: %s", ctx["message"]))
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tls-front", daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), loop)
        try:
            started.result(timeout=10)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the listener and every relayed connection; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, self._host, self._port, ssl=self._context, ssl_handshake_timeout=10
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.wait(list(self._pipes), timeout=2)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._upstream_port)
        except OSError:
            writer.close()
            self._pipes.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream or a broken connection, then half-close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
