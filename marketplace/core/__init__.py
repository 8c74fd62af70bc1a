"""The pure, synchronous heart of the marketplace: no I/O, no clocks, no tasks."""
