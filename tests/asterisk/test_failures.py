"""Never the reason a call fails: hung and dead servers, restarts, a full pool.
Each test checks the result names and that the call went on; the waits the
channels saw are recorded as figures, never asserted on."""

import time

import pytest

from conftest import general
from harness.servers import Memcached


def test_hung_server_times_out_then_fails_fast(start_pbx, hung, figures):
    pbx = start_pbx(general("server=" + hung.address, "timeout=200", "connect_timeout=200",
                            "server_failure_limit=1", "retry_timeout=60"))
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_TIMEOUT"
    first = pbx.elapsed
    # Marked failed: no network wait at all until retry_timeout has passed.
    results, waits = [], []
    for call in ("mcdset(k,v)", "mcddelete(k)", "mcdget(GOT,k)"):
        results.append(pbx.app(call)[1])
        waits.append(pbx.elapsed)
    assert results == ["MEMCACHED_SERVER_TEMPORARILY_DISABLED"] * 3
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
    assert pbx.fn("${MCDCOUNTER(k,1)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
    figures("hung server, timeout=200 ms: first call waited %.3f s; once marked failed, "
            "calls waited at most %.3f s" % (first, max(waits)))


def test_hung_server_text_protocol_times_out_too(start_pbx, hung, figures):
    pbx = start_pbx(general("server=" + hung.address, "binary_proto=no", "timeout=200",
                            "connect_timeout=200", "server_failure_limit=1", "retry_timeout=60"))
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_TIMEOUT")
    figures("hung server, text protocol, timeout=200 ms: read waited %.3f s" % pbx.elapsed)


def test_restarted_server_is_used_again_without_reload(start_pbx, figures):
    server = Memcached()
    port = server.port
    try:
        pbx = start_pbx(general("server=" + server.address, "retry_timeout=1"))
        assert pbx.app("mcdset(k,before)")[1] == "MEMCACHED_SUCCESS"
        server.stop()
        down = pbx.app("mcdset(k,while-down)")[1]
        assert down in ("MEMCACHED_CONNECTION_FAILURE", "MEMCACHED_WRITE_FAILURE",
                        "MEMCACHED_READ_FAILURE", "MEMCACHED_UNKNOWN_READ_FAILURE",
                        "MEMCACHED_SERVER_TEMPORARILY_DISABLED"), down
        server = Memcached(port=port)
        started = time.monotonic()
        deadline = started + 15
        result = None
        while time.monotonic() < deadline:
            result = pbx.app("mcdset(k,after)")[1]
            if result == "MEMCACHED_SUCCESS":
                break
            time.sleep(0.2)
        assert result == "MEMCACHED_SUCCESS"
        assert pbx.fn("${MCD(k)}") == ("after", "MEMCACHED_SUCCESS")
        figures("memcached restarted on its port (retry_timeout=1): writes succeeded again "
                "%.1f s later, with no reload; while down: %s" % (time.monotonic() - started, down))
    finally:
        server.stop()


@pytest.mark.parametrize("pool_wait", [0, 1])
def test_full_pool_gives_pool_exhausted(start_pbx, hung, figures, pool_wait):
    # One connection, held for 5 s by a call waiting on a hung server.
    pbx = start_pbx(general("server=" + hung.address, "pool_size=1", "pool_wait=%d" % pool_wait,
                            "timeout=5000", "connect_timeout=5000"))
    pbx.ast.cli("channel originate Local/hold@tests application Wait 0")
    time.sleep(1.0)
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_POOL_EXHAUSTED")
    figures("pool_size=1 busy, pool_wait=%d: the next call waited %.3f s for "
            "MEMCACHED_POOL_EXHAUSTED" % (pool_wait, pbx.elapsed))


def test_a_dead_server_does_not_flood_the_log(start_pbx):
    from harness.ports import free_port
    pbx = start_pbx(general("server=127.0.0.1:%d" % free_port(), "retry_timeout=60"))
    mark = pbx.log_mark()
    for n in range(10):
        assert pbx.fn("${MCD(k%d)}" % n)[1] in ("MEMCACHED_CONNECTION_FAILURE",
                                                "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
    warnings = [line for line in pbx.log_since(mark).splitlines()
                if "WARNING" in line and "MCD read" in line]
    # The first failure is logged; the rest are counted for the next warning, 10 s on.
    assert len(warnings) == 1, warnings


def test_a_full_pool_logs_a_line_per_window_not_one_per_call(start_pbx, hung, figures):
    # The only connection is held by a call waiting on a hung server (timeout 20 s);
    # meanwhile 16 channels make 50 reads each, all refused at once for want of one.
    pbx = start_pbx(general("server=" + hung.address, "pool_size=1", "pool_wait=0",
                            "timeout=20000", "connect_timeout=20000"))
    mark = pbx.log_mark()
    started = time.monotonic()
    pbx.ast.cli("channel originate Local/hold@tests application Wait 0")
    pbx.ast.wait_for(lambda: pbx.fn("${MCD(probe)}")[1] == "MEMCACHED_POOL_EXHAUSTED", limit=10)
    channels, calls = 16, 50
    pbx.ast.cli("dialplan set global OVERLOAD_CALLS %d" % calls)
    for n in range(channels):
        pbx.ast.cli("channel originate Local/overload-%d@tests application Wait 0" % n)
    pbx.ast.wait_for(lambda: all("OVERLOAD_%d" % n in pbx.ast.globals() for n in range(channels)))
    elapsed = time.monotonic() - started
    found = pbx.ast.globals()
    assert [found["OVERLOAD_%d" % n] for n in range(channels)] == ["0/%d" % calls] * channels
    lines = [line for line in pbx.log_since(mark).splitlines()
             if "WARNING" in line and "MEMCACHED_POOL_EXHAUSTED" in line]
    # One line per 10-second window at most, however many calls were refused.
    windows = 1 + int(elapsed // 10) + 1
    assert 1 <= len(lines) <= windows, lines
    figures("pool_size=1 held, pool_wait=0: %d calls on %d channels refused with "
            "MEMCACHED_POOL_EXHAUSTED in %.1f s, %d warning line(s) logged"
            % (channels * calls, channels, elapsed, len(lines)))

