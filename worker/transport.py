"""kombu's Redis transport, made cheaper per message for a worker node's main process.

kombu's Redis channel wraps its connection pool in a new ``redis.Redis`` for every
synchronous operation (``conn_or_acquire``): a worker node's main process builds two for
every message it takes and acknowledges, and redis-py's constructor (it copies a table of
~150 response callbacks) was a fifth of that process's CPU under load (py-spy during
bench/service_throughput.py). A client is only a view of the pool, so one per channel and
pool serves every operation; a new pool (after a reconnect) gets a new client.

kombu emulates acknowledgements with two records per message it hands to the pool (a sorted
set of delivery times and a hash of the messages, "unacked"): written after BRPOP took the
message, deleted on ack. Stock kombu waits for Redis's reply to both writes, and the pool
process whose task just ended waits for that too before it gets its next message (with a
prefetch of one per process there is none buffered). Here both writes go out in order on
one connection of their own without waiting; replies are read when the next write goes out,
and always before kombu reads those records back (restores). What a reply that never comes
can cost is what it costs in stock kombu at the same point: a message taken but not yet
recorded is republished by the outbox sweeper (ser/outbox.py), an acknowledgement lost with
its connection means one redelivery, which the job record turns into a no-op.
(bench/service_throughput.py, A/B on 2 cores: 157 -> 168 predictions/s.)

Used through celeryconfig's ``broker_transport`` for redis:// URLs (kombu applies its TLS
defaults for rediss:// only to the transport named "rediss", so those keep kombu's own).
"""

from __future__ import annotations

import logging
import threading
from time import time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

log = logging.getLogger(__name__)


class _Unreplied:
    """A connection whose commands are sent now and whose replies are read later (in order)."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.conn = pool.make_connection()
        self.pending = 0  # replies not read yet
        self.lock = threading.Lock()

    def send(self, *commands) -> None:
        """Send ``commands`` as one MULTI/EXEC; read whatever replies have arrived."""
        packed = [("MULTI",), *commands, ("EXEC",)]
        with self.lock:
            try:
                # also notices a connection the server closed (EOF), before writing into it
                while self.conn.can_read(timeout=0):
                    self._read_one()
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                self._lost(exc)
            for attempt in (1, 2):  # a connection found broken is reopened once
                try:
                    self.conn.send_packed_command(self.conn.pack_commands(packed))
                except Exception as exc:  # noqa: BLE001
                    self._lost(exc)
                    if attempt == 2:
                        log.warning("an unacked-index write could not be sent: %s", exc)
                    continue
                self.pending += len(packed)
                return

    def flush(self) -> None:
        """Wait until Redis has applied (answered) everything sent so far."""
        with self.lock:
            try:
                while self.pending:
                    self._read_one()
            except Exception as exc:  # noqa: BLE001
                self._lost(exc)

    def close(self) -> None:
        self.flush()
        self.conn.disconnect()

    def _read_one(self) -> None:
        try:
            reply = self.conn.read_response(disable_decoding=True)
        except kombu_redis.redis.exceptions.ResponseError as exc:  # e.g. OOM under noeviction
            reply = [exc]
        self.pending = max(0, self.pending - 1)
        for item in reply if isinstance(reply, list) else ():  # EXEC: one per command
            if isinstance(item, Exception):
                log.warning("an unacked-index write failed: %s", item)

    def _lost(self, exc: Exception) -> None:
        if self.pending:
            log.warning("%d unacked-index writes lost with their connection: %s", self.pending, exc)
        self.pending = 0
        self.conn.disconnect()  # the next command reconnects


class QoS(kombu_redis.QoS):
    """kombu's ack emulation with its writes not waited for (see the module docstring)."""

    def _writer(self) -> _Unreplied:
        channel = self.channel
        writer = getattr(channel, "_unreplied", None)
        if writer is None or writer.pool is not channel.pool:
            writer = channel._unreplied = _Unreplied(channel.pool)
        return writer

    def _flush(self) -> None:
        writer = getattr(self.channel, "_unreplied", None)
        if writer is not None:
            writer.flush()

    def append(self, message, delivery_tag):
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        self._writer().send(
            ("ZADD", self.unacked_index_key, time(), delivery_tag),
            ("HSET", self.unacked_key, delivery_tag, entry),
        )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag):
        self._writer().send(
            ("ZREM", self.unacked_index_key, delivery_tag),
            ("HDEL", self.unacked_key, delivery_tag),
        )
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self._flush()  # the message's record must be in Redis to be put back
            return super().reject(delivery_tag, requeue=True)
        self.ack(delivery_tag)

    # kombu reads the records back here: everything sent must have landed first.
    def restore_unacked(self, client=None):
        self._flush()
        return super().restore_unacked(client)

    def restore_visible(self, *args, **kwargs):
        self._flush()
        return super().restore_visible(*args, **kwargs)

    def restore_by_tag(self, tag, client=None, leftmost=False):
        self._flush()
        return super().restore_by_tag(tag, client, leftmost)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _sync_client = None
    _unreplied = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client

    def close(self):
        try:
            super().close()  # restores unacked messages at shutdown (after a flush)
        finally:
            if self._unreplied is not None:
                self._unreplied.close()


class Transport(kombu_redis.Transport):
    Channel = Channel
