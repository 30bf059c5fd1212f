"""Real services for the tests: each started on a free port and stopped after."""
