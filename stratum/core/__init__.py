"""The sans-I/O core of the Stratum side: pure functions and state machines only."""
