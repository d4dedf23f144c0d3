"""CloudWatch alarm definitions, their generated JSON and promtool-like test vectors."""
