"""Use cases: take ports as parameters, import no web framework."""
