"""kombu's Redis transport, with one redis-py client per channel instead of one per command.

kombu's Redis channel wraps its connection pool in a new ``redis.Redis`` for every
synchronous operation (``conn_or_acquire``): a worker node's main process builds two for
every message it takes and acknowledges, and redis-py's constructor (it copies a table of
~150 response callbacks) was a fifth of that process's CPU under load (py-spy during
bench/service_throughput.py). A client is only a view of the pool, so one per channel and
pool serves every operation; a new pool (after a reconnect) gets a new client.

Used through celeryconfig's ``broker_transport`` for redis:// URLs (kombu applies its TLS
defaults for rediss:// only to the transport named "rediss", so those keep kombu's own).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
