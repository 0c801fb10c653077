"""Recovery from the faults of production: a memcached restarted under load or just
before a burst costs the calls made while it is down, not seconds more."""

import time
from concurrent.futures import ThreadPoolExecutor

from pymemcache.client.base import Client

from conftest import general
from harness.servers import Memcached

PREFIX = ""


def answers(address):
    try:
        client = Client(address, connect_timeout=0.5, timeout=0.5)
        client.version()
        client.close()
        return True
    except Exception:
        return False


def test_restart_under_busy_channels_fails_no_call_after_memcached_answers(start_pbx, figures):
    server = Memcached()
    port = server.port
    channels = 16
    try:
        pbx = start_pbx(general("server=" + server.address))
        ast = pbx.ast
        ast.cli("dialplan set global WRITERS_STOP 0")
        for n in range(channels):
            ast.cli("channel originate Local/writer-%d@tests application Wait 60" % n)
        # Every writer has written: their pooled connections are open.
        client = Client(server.client_address)
        ast.wait_for(lambda: all(client.get("writer_%d" % n) for n in range(channels)))
        client.close()
        time.sleep(0.5)
        server.stop()
        time.sleep(0.3)
        server = Memcached(port=port)
        ast.wait_for(lambda: answers(server.client_address), limit=10)
        back = time.time()
        time.sleep(2.0)
        ast.cli("dialplan set global WRITERS_STOP 1")
        ast.wait_for(lambda: all(ast.global_var("WDONE_%d" % n) for n in range(channels)))
        made = sum(int(ast.global_var("WDONE_%d" % n)) for n in range(channels))
        failed = sum(int(ast.global_var("WFAILS_%d" % n)) for n in range(channels))
        last = [ast.global_var("WLAST_%d" % n).split("/") for n in range(channels)]
        # Every writer saw memcached down, and none failed once it had been back 0.5 s.
        assert all(result for _, result in last), last
        late = [(round(float(when) - back, 3), result) for when, result in last
                if float(when) > back + 0.5]
        assert late == []
        figures("memcached restarted under %d channels writing every 20 ms (%d writes): %d failed; "
                "the last failure %.3f s after memcached answered again"
                % (channels, made, failed, max(float(when) for when, _ in last) - back))
    finally:
        server.stop()


def test_locked_increments_right_after_a_restart_are_exact(start_pbx, figures):
    server = Memcached()
    port = server.port
    try:
        pbx = start_pbx(general("server=" + server.address, "pool_size=48"))
        ast = pbx.ast
        client = Client(server.client_address)
        # 40 channels at once open 40 pooled connections, left idle.
        for n in range(40):
            ast.cli("channel originate Local/bump@tests application Wait 0")
        ast.wait_for(lambda: client.get("concurrent_done") == b"40")
        client.close()
        server.stop()
        server = Memcached(port=port)
        client = Client(server.client_address)
        client.set("locked_value", "0")
        client.set("lock_failures", "")
        client.set("lock_done", "")
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: ast.cli("channel originate Local/locked-increments@tests "
                                            "application Wait 0"), range(40)))
        ast.wait_for(lambda: len(client.get("lock_done") or b"") == 40, limit=120)
        assert client.get("lock_failures") == b""
        assert client.get("locked_value") == b"800"
        figures("memcached restarted with 40 idle pooled connections, then 40 channels x 20 "
                "locked increments: value 800 exact, no failure, in %.1f s" % (time.monotonic() - started))
        client.close()
    finally:
        server.stop()
