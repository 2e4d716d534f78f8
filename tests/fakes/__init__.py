"""Fake upstream servers for tests and benchmarks: real HTTP on loopback, replaying each
provider's wire format (with its quirks) from the project's own scripted content."""
