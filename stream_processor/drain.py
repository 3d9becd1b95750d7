"""A Faust app whose consumer hands each fetched batch to the streams in one task.

Faust's consumer (``faust.transport.consumer.Consumer._drain_messages``) delivers every record
through ``wait_first(callback(message), suspend_flow.wait())``: four new tasks and an
``asyncio.wait`` per record, so that a rebalance that suspends the flow can interrupt a delivery
blocked on a full stream buffer. At thousands of records per second that bookkeeping cost more
CPU than the processor's own logic (the worker's profile in BENCHMARKS.md, "Stream processor").

:class:`BatchDrainingConsumer` keeps those semantics per *fetch* instead of per record: one
``wait_first`` runs the delivery of the whole batch, record after record in offset order with
Faust's gap and commit bookkeeping, and a rebalance still cancels it where it stands. A record
whose delivery was cancelled is not marked read; the rebalance seeks to the committed offsets
anyway, so nothing is skipped.

A topic can also have a *record handler* (:meth:`App.handle_records`): its records then skip
Faust's conductor, stream queue and stream iteration, which cost more per record than the
processor's own logic, and go straight to the handler, with the checks the stream would make
(flow control, generation). Acknowledging them is the handler's job, through the consumer's
``ack``, as with ``stream.noack()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver

# Records delivered between two yields to the event loop, as Faust's own loop does.
YIELD_EVERY = 100


class BatchDrainingConsumer(aiokafka_driver.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # runs as long as the worker consumes
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batch = [item async for item in self.getmany(timeout=1.0)]
                await self.sleep(0)
                if batch and not self.should_stop:
                    await self.wait_first(self._deliver(batch), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, batch: list) -> None:
        """Faust's per-record loop body, for one fetch's records."""
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        handlers = self.app.record_handlers
        app, flow_active = self.app, self.app.flow_control.is_active
        for n, (tp, message) in enumerate(batch, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                handler = handlers.get(message.topic)
                if handler is None:
                    await callback(message)
                elif flow_active() and message.generation_id == app.consumer_generation_id:
                    # What Faust's stream does before yielding an event: a record fetched before a
                    # rebalance (an older generation, or flow stopped for it) is not processed.
                    if acks_enabled_for(message.topic) and not message.tracked:
                        message.tracked = True
                        self.track_message(message)  # a rebalance waits for its acknowledgement
                    pending = handler(message)
                    if pending is not None:
                        await pending
                set_read_offset(tp, offset)


class BatchDrainingTransport(aiokafka_driver.Transport):
    Consumer = BatchDrainingConsumer


RecordHandler = Callable[[Any], Awaitable[None] | None]


class App(faust.App):
    """``faust.App`` with :class:`BatchDrainingConsumer` as its consumer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record_handlers: dict[str, RecordHandler] = {}

    def handle_records(self, topic: str, handler: RecordHandler) -> None:
        """Deliver ``topic``'s records to ``handler`` (a Faust message each) instead of its streams.

        The topic must still be subscribed (an agent over it); ``handler`` returns None, or an
        awaitable the consumer waits for before the next record (for back-pressure).
        """
        self.record_handlers[topic] = handler

    def _new_transport(self) -> BatchDrainingTransport:
        return BatchDrainingTransport(self.conf.broker_consumer, self)
