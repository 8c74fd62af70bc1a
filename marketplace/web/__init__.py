"""The node's web side on the API port: the dashboard page and its assets, the live feed
(``/events``), ``/metrics``, ``/healthz`` and ``/readyz`` (see ``site.py``)."""
