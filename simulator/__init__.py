"""A vendor simulator: the REST API of an energy-storage cloud, served over real HTTP.

Tests, the local run and the benchmarks talk to it as the worker would talk to a vendor:
API-key / bearer / OAuth2 auth, paginated site list, paginated telemetry, injectable faults.
Telemetry is deterministic per (seed, station, timestamp), so two fetches agree.
"""
