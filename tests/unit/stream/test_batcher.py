"""Natural batching: order, size limit, events taken in while a batch is handled, failures."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.stream.batcher import QUIET_S, Batcher, BatchFailedError


class Recorder:
    """A handler that records its batches and takes ``pause`` seconds (an acknowledgement)."""

    def __init__(self, pause: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.pause = pause
        self.fail_on = fail_on
        self.busy = asyncio.Event()
        self.progress = asyncio.Event()
        self.failed = asyncio.Event()

    async def __call__(self, batch: list[int]) -> None:
        self.busy.set()
        if self.fail_on is not None and self.fail_on in batch:
            self.failed.set()
            raise OSError("the producer refused")
        self.batches.append(batch)
        self.progress.set()
        await asyncio.sleep(self.pause)

    @property
    def handled(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


async def settle(recorder: Recorder, count: int) -> None:
    async with asyncio.timeout(5):
        while len(recorder.handled) < count:
            recorder.progress.clear()
            await recorder.progress.wait()


@pytest.mark.asyncio
async def test_a_lone_event_is_handed_on_at_once() -> None:
    recorder = Recorder()
    async with Batcher(recorder, max_size=10) as batcher:
        await batcher.add(1)
        await settle(recorder, 1)
    assert recorder.batches == [[1]]


@pytest.mark.asyncio
async def test_events_arriving_during_a_batch_form_the_next_one() -> None:
    recorder = Recorder(pause=0.05)
    async with Batcher(recorder, max_size=100) as batcher:
        await batcher.add(0)
        await recorder.busy.wait()  # the first batch is being handled (awaiting its acks)
        for item in range(1, 6):
            await batcher.add(item)  # taken in meanwhile, not held up
        assert batcher.waiting == 5
        await settle(recorder, 6)
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]


@pytest.mark.asyncio
async def test_a_full_batch_holds_the_stream_back_until_it_is_taken() -> None:
    recorder = Recorder(pause=0.05)
    async with Batcher(recorder, max_size=3) as batcher:
        await batcher.add(0)
        await recorder.busy.wait()
        for item in (1, 2, 3):
            await batcher.add(item)
        blocked = asyncio.create_task(batcher.add(4))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # three waiting: the fourth waits for room
        await blocked
        await settle(recorder, 5)
    assert recorder.batches == [[0], [1, 2, 3], [4]]


@pytest.mark.asyncio
async def test_a_batch_grows_while_events_keep_coming() -> None:
    recorder = Recorder()
    async with Batcher(recorder, max_size=100, linger_s=1.0) as batcher:
        for item in range(20):
            await batcher.add(item)
            await asyncio.sleep(QUIET_S / 10)  # back to back
        await settle(recorder, 20)
    assert recorder.batches == [list(range(20))]


@pytest.mark.asyncio
async def test_a_quiet_gap_hands_the_batch_on() -> None:
    recorder = Recorder()
    async with Batcher(recorder, max_size=100, linger_s=1.0) as batcher:
        await batcher.add(1)
        await settle(recorder, 1)  # handed on after QUIET_S without another, not after 1 s
        await batcher.add(2)
        await settle(recorder, 2)
    assert recorder.batches == [[1], [2]]


@pytest.mark.asyncio
async def test_growth_stops_at_linger_even_while_events_keep_coming() -> None:
    recorder = Recorder()
    linger = 0.02
    async with Batcher(recorder, max_size=10_000, linger_s=linger) as batcher:
        started = asyncio.get_running_loop().time()
        item = 0
        while asyncio.get_running_loop().time() - started < 5 * linger:
            await batcher.add(item)
            item += 1
            await asyncio.sleep(QUIET_S / 10)
        await settle(recorder, item)
    assert len(recorder.batches) >= 3  # several batches, none waiting for the stream to pause


@pytest.mark.asyncio
async def test_without_linger_a_batch_is_what_was_already_delivered() -> None:
    recorder = Recorder()
    async with Batcher(recorder, max_size=100, linger_s=0) as batcher:
        await batcher.add(1)
        await settle(recorder, 1)
        await batcher.add(2)
        await asyncio.sleep(QUIET_S / 10)
        await batcher.add(3)
        await settle(recorder, 3)
    assert recorder.batches[0] == [1]
    assert recorder.handled == [1, 2, 3]


async def fail_at_the_second_batch(recorder: Recorder, errors: list[BaseException]) -> None:
    async with Batcher(recorder, max_size=1) as batcher:
        await batcher.add(1)
        await settle(recorder, 1)
        await batcher.add(2)
        async with asyncio.timeout(5):
            await recorder.failed.wait()  # the batcher keeps the error as the handler raises
        try:
            await batcher.add(3)
        except BatchFailedError as exc:
            errors.append(exc)


@pytest.mark.asyncio
async def test_a_failed_batch_stops_the_batcher_and_the_error_reaches_the_stream() -> None:
    recorder = Recorder(fail_on=2)
    on_adding: list[BaseException] = []
    with pytest.raises(BatchFailedError) as on_leaving:
        await fail_at_the_second_batch(recorder, on_adding)
    assert [type(e.__cause__) for e in on_adding] == [OSError]
    assert isinstance(on_leaving.value.__cause__, OSError)
    assert recorder.handled == [1]  # nothing after the failed batch


@pytest.mark.asyncio
async def test_leaving_normally_waits_until_every_event_is_handled() -> None:
    recorder = Recorder(pause=0.01)
    async with Batcher(recorder, max_size=2) as batcher:
        for item in range(5):
            await batcher.add(item)
    assert recorder.handled == [0, 1, 2, 3, 4]


@pytest.mark.asyncio
async def test_adding_outside_the_context_is_refused() -> None:
    batcher = Batcher(Recorder(), max_size=1)
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.add(1)
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(Recorder(), max_size=0)


async def stop_while_a_batch_is_handled(recorder: Recorder) -> None:
    async with Batcher(recorder, max_size=5) as batcher:
        await batcher.add(1)
        await recorder.busy.wait()
        await batcher.add(2)
        raise asyncio.CancelledError  # the agent stopped


@pytest.mark.asyncio
async def test_leaving_on_an_error_cancels_a_batch_being_handled() -> None:
    recorder = Recorder(pause=10)
    with pytest.raises(asyncio.CancelledError):
        await stop_while_a_batch_is_handled(recorder)
    assert recorder.batches == [[1]]  # left at once, not after the 10 s; 2 never handed on


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.002]), min_size=1, max_size=60),
    max_size=st.integers(min_value=1, max_value=8),
    pause=st.sampled_from([0.0, 0.001, 0.003]),
)
def test_every_event_is_handed_on_once_in_order_in_batches_of_at_most_max_size(
    gaps: list[float], max_size: int, pause: float
) -> None:
    async def run() -> Recorder:
        recorder = Recorder(pause=pause)
        async with Batcher(recorder, max_size=max_size) as batcher:
            for item, gap in enumerate(gaps):
                await batcher.add(item)
                await asyncio.sleep(gap)
            await settle(recorder, len(gaps))
        return recorder

    recorder = asyncio.run(run())
    assert recorder.handled == list(range(len(gaps)))
    assert all(1 <= len(batch) <= max_size for batch in recorder.batches)


class CancelledInside(Recorder):
    """A handler whose awaited send is cancelled (not the batcher leaving)."""

    async def __call__(self, batch: list[int]) -> None:
        self.batches.append(batch)
        self.failed.set()
        raise asyncio.CancelledError


async def cancelled_inside_a_batch(recorder: Recorder, errors: list[BaseException]) -> None:
    async with Batcher(recorder, max_size=2) as batcher:
        await batcher.add(1)
        async with asyncio.timeout(5):
            await recorder.failed.wait()
        await asyncio.sleep(0)
        for item in (2, 3, 4):  # more than fit: must not wait for room forever
            try:
                await batcher.add(item)
            except BatchFailedError as exc:
                errors.append(exc)
                break


@pytest.mark.asyncio
async def test_a_batch_cancelled_from_inside_is_a_failure_not_a_silent_stop() -> None:
    recorder = CancelledInside()
    on_adding: list[BaseException] = []
    with pytest.raises(BatchFailedError) as on_leaving:
        async with asyncio.timeout(5):
            await cancelled_inside_a_batch(recorder, on_adding)
    assert [type(e.__cause__) for e in on_adding] == [asyncio.CancelledError]
    assert isinstance(on_leaving.value.__cause__, asyncio.CancelledError)
    assert recorder.batches == [[1]]
