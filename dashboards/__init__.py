"""CloudWatch dashboard definitions and the dashboard body JSON they generate."""
