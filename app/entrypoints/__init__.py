"""Composition roots: the only modules that build adapters and hand them to services.

`cli` parses the command line; `api`, `worker` and `scheduler` assemble and run one
process kind each.
"""
