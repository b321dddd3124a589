"""The data side: the resource catalog, stored datasets, the DuckDB engine, persons lists,
cross-comparison rules and synthetic test data."""
