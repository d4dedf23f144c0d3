"""QIS Data Management: reference-data ingestion, reconciliation, publication and query."""
