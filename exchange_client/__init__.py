"""The department client ``exchange-client`` (issue 5)."""
