"""The buyer and account API: JSON-RPC 2.0 over HTTP (``../shared/spec/buyer-api.md``).

Pure parts: ``signing`` (the NiceHash v2 request signature), ``nonces``, ``ratelimit``,
``auth``, ``rpc`` (the JSON-RPC codec), ``wire`` (the API's objects and the one place where
msat and H/s become decimal strings) and ``methods`` (the method table). Drivers: ``app`` (the
ASGI app) and ``server`` (hypercorn's trio worker). The key ring and its idempotency records
are durable domain state, in ``marketplace.core`` (``keys``, ``key_events``,
``idempotency``). The buyer client imports ``wire`` and ``signing`` only.
"""
