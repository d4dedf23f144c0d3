"""HTTP routes: translate wire <-> domain, nothing else."""
