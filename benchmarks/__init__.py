"""Kernel benchmarks: every compiled kernel measured beside its pure-Python twin (and peers) in one run."""
