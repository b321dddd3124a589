"""The administrator's commands: ``exchange-server`` (init, dept, catalog, compare, serve, demo)."""
