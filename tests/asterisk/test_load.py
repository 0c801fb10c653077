"""Load: many concurrent channels doing set, get, append and counter steps
while an outside client bumps the same counters and the module is reloaded
again and again. Nothing may fail and every counter must be exact. The
sizes come from LOAD_CHANNELS, LOAD_ITERATIONS (the short run in make test;
make load runs a long one). Counts are recorded as figures."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pymemcache.client.base import Client

from conftest import PREFIX, general

CHANNELS = int(os.environ.get("LOAD_CHANNELS", "100"))
ITERATIONS = int(os.environ.get("LOAD_ITERATIONS", "20"))
OUTSIDE = int(os.environ.get("LOAD_OUTSIDE", "500"))
COUNTERS = 4


def test_load_with_reloads_keeps_every_count(start_pbx, memcached, mc, figures):
    conf = general("server=" + memcached.address, "prefixkey=" + PREFIX, "pool_size=64",
                   "pool_wait=2")
    pbx = start_pbx(conf)
    for n in range(COUNTERS):
        mc.set(PREFIX + "load_counter%d" % n, b"0")
    for name in ("load_done", "load_failures", "load_ops"):
        mc.set(PREFIX + name, b"0")
    pbx.ast.cli("dialplan set global LOAD_ITERATIONS %d" % ITERATIONS)

    stop = threading.Event()
    reloads = [0]

    def reloader():
        # The same file each time: every reload builds and swaps in a new client.
        while not stop.is_set():
            pbx.ast.cli("module reload res_memcached")
            reloads[0] += 1
            time.sleep(0.3)

    def outside_client():
        client = Client(("127.0.0.1", memcached.port))
        for i in range(OUTSIDE):
            client.incr(PREFIX + "load_counter%d" % (i % COUNTERS), 1)

    def originate(_):
        pbx.ast.cli("channel originate Local/load@tests application Wait 0")

    started = time.monotonic()
    background = [threading.Thread(target=reloader), threading.Thread(target=outside_client)]
    for t in background:
        t.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(originate, range(CHANNELS)))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and int(mc.get(PREFIX + "load_done")) < CHANNELS:
        time.sleep(0.2)
    stop.set()
    for t in background:
        t.join()
    elapsed = time.monotonic() - started

    assert int(mc.get(PREFIX + "load_done")) == CHANNELS
    assert int(mc.get(PREFIX + "load_failures")) == 0
    ops = int(mc.get(PREFIX + "load_ops"))
    assert ops == CHANNELS * ITERATIONS * 6
    counted = sum(int(mc.get(PREFIX + "load_counter%d" % n)) for n in range(COUNTERS))
    assert counted == CHANNELS * ITERATIONS + OUTSIDE
    assert "Running" in pbx.ast.cli("module show like res_memcached")
    assert pbx.ast.proc.poll() is None
    figures("load: %d channels x %d iterations = %d dialplan operations, 0 failed, %d "
            "reloads meanwhile, %d outside increments; counters exact (%d); %.1f s"
            % (CHANNELS, ITERATIONS, ops, reloads[0], OUTSIDE, counted, elapsed))
