"""The domain: the rules of observations, reconciliation, quality, versions, as-of reads
and the audit chain, as pure functions and immutable structs (no I/O, no clock)."""
