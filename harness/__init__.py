"""The test harness: real memcached servers, proxies and private Asterisk
instances on loopback, started for the tests, the benchmark and the demo and
stopped by their own process ids. Import it from the repository's root
(python3 -m pytest, python3 -m bench.bench, python3 -m sandbox.demo)."""
