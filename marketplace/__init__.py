"""The marketplace: order book, allocation, ledger, settlement, storage, the buyer API and the
node that runs them. ``marketplace.core`` is pure and synchronous (time and ids injected);
everything that touches sockets, files or clocks lives outside it and imports it, never the
reverse."""
