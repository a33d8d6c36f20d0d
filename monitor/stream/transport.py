"""Faust's Kafka transport with a configurable consumer fetch wait, and end offsets counted per
record on a broker that counts them per batch.

faust-streaming 0.15 hardcodes aiokafka's ``fetch_max_wait_ms=1500``. The embedded Tansu broker
holds a fetch for that long even when records arrive, which alone put about 400 ms (p50) between
a result and its alert; a bare aiokafka consumer on Tansu measured p50 392 ms at 1500 ms, 133 ms
at 500 ms, 13 ms at 50 ms and 3 ms at 10 ms. Apache Kafka answers a fetch as soon as data is
there, so a short wait only costs a few more empty fetches.

With ``end_offsets_per_batch`` (the embedded broker), the end offsets Faust's table recovery
reads (``Recovery._build_highwaters`` calls ``Consumer.highwaters``) are corrected by
``monitor.kafka.end_offsets``, so the producer may put many records in a batch and the recovery
still reads every changelog record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TransportT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from monitor.kafka.end_offsets import record_end_offsets


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_max_wait_ms: ClassVar[int] = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher (aiokafka 0.14).
        consumer._fetch_max_wait_ms = type(self).fetch_max_wait_ms
        return consumer


def transport_with_fetch_wait(
    fetch_max_wait_ms: int, end_offsets_per_batch: bool = False
) -> type[driver.Transport]:
    thread = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms})

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread(self, loop=self.loop, beacon=self.beacon)

        async def highwaters(self, *partitions: Any) -> Mapping[Any, int]:
            reported = await super().highwaters(*partitions)
            if not end_offsets_per_batch or not any(reported.values()):
                return reported
            reader = _end_reader(self.app.conf, cast(driver.Transport, self.transport))
            await reader.start()
            try:
                return await record_end_offsets(reader, reported)
            finally:
                await reader.stop()

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def _end_reader(conf: Any, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
    """A consumer with Faust's own connection settings (servers, TLS, SASL), no group, no limit
    on records per poll (``record_end_offsets`` reads whole batches) and a short fetch wait."""
    return aiokafka.AIOKafkaConsumer(
        client_id=conf.broker_client_id,
        bootstrap_servers=driver.server_list(transport.url, transport.default_port),
        request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        check_crcs=conf.broker_check_crcs,
        **driver.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
    )


class MonitorFaustApp(faust.App):
    """A Faust app whose consumer uses ``fetch_max_wait_ms`` and, with
    ``end_offsets_per_batch``, corrects the end offsets (see the module docstring)."""

    fetch_max_wait_ms: int = 1500
    end_offsets_per_batch: bool = False

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ResumeOnceFlowControl(loop=self.loop)

    def _new_transport(self) -> TransportT:
        transport_class = transport_with_fetch_wait(
            self.fetch_max_wait_ms, self.end_offsets_per_batch
        )
        return transport_class(self.conf.broker_consumer, self)


class ResumeOnceFlowControl(FlowControlEvent):
    """Flow control whose ``resume`` clears the stream buffers only when flow was suspended.

    faust-streaming 0.15.3 resumes flow twice after a rebalance whose changelogs have nothing to
    replay (standbys up to date, as when a worker takes over a killed one's partitions):
    ``Recovery._restart_recovery`` resumes it, the fetcher starts filling the stream buffers, and
    ``Recovery.on_recovery_completed`` then seeks to the committed offsets and resumes again,
    which clears every buffer. The records in them were already counted as read, so they were
    never processed: a worker that took over after a SIGKILL skipped a few to a few dozen results
    per partition (tests/integration/test_worker.py). Clearing on the first resume after a
    suspend still drops what was fetched before the rebalance.
    """

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()
