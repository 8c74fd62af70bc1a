"""Stratum v1: the wire protocol, share math, the trio server and the trio client.

``stratum.core`` is sans-I/O (bytes and values in, bytes and values out, no sockets, clocks or
tasks); ``stratum.server`` and ``stratum.client`` are the thin trio drivers around it.
"""
