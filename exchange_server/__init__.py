"""The exchange node: SFTP front, spool ingest, state store, router, receipts (issue 4 onward)."""
