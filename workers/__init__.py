"""CPU mining workers: a trio program speaking Stratum, hashing in worker processes."""
