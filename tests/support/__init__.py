"""Helpers shared by the tests that run the venue and ``engine run`` as separate processes (the chaos
harness, the crash test): ``processes`` (ports, the admin socket), ``trading`` (the signals of their
always-trading strategies)."""
