"""MCDRATE: calls per period limited across Asterisks sharing memcached. Real
channels on two private Asterisks, admissions logged with their times; every
wait polls until a generous deadline."""

import time

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, Pbx, general, memcached_keys, read_file
from harness.pbx import Asterisk
from harness.ports import free_port
from harness.servers import Memcached


def conf(server, *lines):
    return general("server=" + server.address, "prefixkey=" + PREFIX, *lines)


@pytest.fixture
def server():
    server = Memcached()
    yield server
    server.stop()


@pytest.fixture
def asterisks():
    started = []

    def start(text):
        ast = Asterisk(read_file("extensions.conf"), text)
        started.append(ast)
        return ast

    yield start
    for ast in started:
        ast.stop()


def rate_keys(port, name):
    """The keys memcached holds for a rate name."""
    return [k for k in memcached_keys(port) if k.startswith(PREFIX + "_mcd:rate:%s" % name)]


@pytest.mark.long
def test_overload_from_two_asterisks_never_passes_the_limit_in_any_span(server, asterisks, figures):
    limit, period = 20, 2.0
    client = Client(server.client_address)
    client.set(PREFIX + "rate_log", b"")
    east, west = asterisks(conf(server)), asterisks(conf(server))
    channels = 5
    for ast in (east, west):
        ast.cli("dialplan set global RATE_SPEC cps_%d,%d,%d" % (time.time_ns() % 10**6, limit, period))
    # Both Asterisks on the same name.
    spec = east.global_var("RATE_SPEC")
    west.cli("dialplan set global RATE_SPEC " + spec)
    for ast in (east, west):
        ast.cli("dialplan set global RATE_STOP 0")
        for n in range(channels):
            ast.cli("channel originate Local/rate-%d@tests application Wait 60" % n)
    time.sleep(9)
    stopped = time.time()
    for ast in (east, west):
        ast.cli("dialplan set global RATE_STOP 1")
    for ast in (east, west):
        ast.wait_for(lambda: all(ast.global_var("RATE_TRIES_%d" % n) for n in range(channels)))
    tries = sum(int(ast.global_var("RATE_TRIES_%d" % n)) for ast in (east, west) for n in range(channels))
    times = sorted(float(t) for t in client.get(PREFIX + "rate_log").split())
    assert times, "nothing admitted"
    # The most admitted within any span of the period (times are logged just after each
    # decision: a few ms of slack).
    worst = max(sum(1 for u in times if t <= u < t + period - 0.05) for t in times)
    assert worst <= limit, worst
    # At least 90% of the limit used from the first admission to the stop.
    offered = limit * (stopped - times[0]) / period
    assert tries > 10 * offered
    assert len(times) >= 0.9 * offered, (len(times), offered)
    figures("MCDRATE %d per %.0f s, two Asterisks x %d channels, %d tries in %.1f s (%.0fx the limit): "
            "%d admitted (%.1f per period on average, the first burst included); the most in any "
            "span of the period: %d" % (limit, period, channels, tries, stopped - times[0], tries / offered,
                                        len(times), len(times) * period / (stopped - times[0]), worst))


@pytest.mark.long
def test_refused_attempts_count_only_with_option_a(server, asterisks):
    pbx = Pbx(asterisks(conf(server)))
    tag = time.time_ns() % 10**6
    for mode in ("", "a"):
        spec = "pin_%s%d,3,4%s" % (mode, tag, "," + mode if mode else "")
        assert [pbx.fn("${MCDRATE(%s)}" % spec) for _ in range(3)] == [("1", "MEMCACHED_SUCCESS")] * 3
        assert pbx.fn("${MCDRATE(%s)}" % spec) == ("0", "MEMCACHED_RATE_LIMITED")
    # Both keep trying for 5 s: the default admits again once the first admissions
    # have left the span; with a, every try keeps the caller refused.
    plain, attempts = [], []
    deadline = time.monotonic() + 5.5
    while time.monotonic() < deadline:
        plain.append(pbx.fn("${MCDRATE(pin_%d,3,4)}" % tag)[0])
        attempts.append(pbx.fn("${MCDRATE(pin_a%d,3,4,a)}" % tag)[0])
        time.sleep(0.3)
    assert "1" in plain
    assert set(attempts) == {"0"}
    # A pause of a period (and a bucket): admitted again.
    time.sleep(4.5)
    assert pbx.fn("${MCDRATE(pin_a%d,3,4,a)}" % tag) == ("1", "MEMCACHED_SUCCESS")


def test_a_calendar_quota_refuses_past_the_limit_until_the_window_ends(server, asterisks):
    pbx = Pbx(asterisks(conf(server)))
    name = "quota_%d" % (time.time_ns() % 10**6)
    got = [pbx.fn("${MCDRATE(%s,3,1h,f)}/${MCDRATE_COUNT}" % name) for _ in range(3)]
    assert got == [("1/1", "MEMCACHED_SUCCESS"), ("1/2", "MEMCACHED_SUCCESS"), ("1/3", "MEMCACHED_SUCCESS")]
    out, result = pbx.fn("${MCDRATE(%s,3,1h,f)}/${MCDRATE_COUNT}/${MCDRATE_RETRY}" % name)
    now = time.time()
    local = time.localtime(now)
    to_next_hour = 3600 - (local.tm_min * 60 + local.tm_sec)
    admitted, count, retry = out.split("/")
    assert (admitted, count, result) == ("0", "3", "MEMCACHED_RATE_LIMITED")
    assert abs(int(retry) - to_next_hour) <= 2, (retry, to_next_hour)
    # A peek says the same and counts nothing.
    assert pbx.fn("${MCDRATE(%s,3,1h,fp)}/${MCDRATE_COUNT}" % name) == ("0/3", "MEMCACHED_SUCCESS")


@pytest.mark.long
def test_a_killed_asterisk_leaves_nothing_once_the_period_has_passed(server, asterisks):
    name = "gone_%d" % (time.time_ns() % 10**6)
    east, west = asterisks(conf(server)), asterisks(conf(server))
    first = Pbx(east)
    assert [first.fn("${MCDRATE(%s,5,2)}" % name)[0] for _ in range(6)] == ["1"] * 5 + ["0"]
    east.proc.kill()
    assert rate_keys(server.port, name)
    killed = time.monotonic()
    other = Pbx(west)
    west.wait_for(lambda: other.fn("${MCDRATE(%s,5,2)}" % name)[0] == "1", limit=10)
    # The keys expire: nothing is left of the killed Asterisk's calls, nor of this one's.
    west.wait_for(lambda: rate_keys(server.port, name) == [], limit=15)
    assert time.monotonic() - killed > 2


@pytest.mark.parametrize("setting, admitted", [(None, "1"), ("admit", "1"), ("refuse", "0")])
def test_memcached_down_admits_unless_configured_to_refuse(asterisks, setting, admitted):
    lines = ["server=127.0.0.1:%d" % free_port()] + (["rate_on_failure=" + setting] if setting else [])
    pbx = Pbx(asterisks(general(*lines)))
    out, result = pbx.fn("${MCDRATE(down,5,1)}|${MCDRATE_COUNT}")
    # fn returning at all means the channel went on to its next priority.
    assert out == admitted + "|"
    assert result in ("MEMCACHED_CONNECTION_FAILURE", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")


@pytest.mark.parametrize("args, complaint", [
    ("bad,0,10", "limit '0' is not a whole number from 1"),
    ("bad,x,10", "limit 'x' is not a whole number from 1"),
    ("bad,5,31d", "period '31d' is out of range"),
    ("bad,5,0", "period '0' is out of range"),
    ("bad,5,10,z", "unknown option 'z'"),
    ("bad,5", "needs a name, a limit and a period"),
    ("bad:colon,5,10", "holds ':' or spaces"),
    ("b%s,5,10" % ("a" * 80), "over 80 bytes"),
])
def test_bad_input_is_refused_with_the_syntax_and_counts_nothing(server, asterisks, args, complaint):
    pbx = Pbx(asterisks(conf(server)))
    mark = pbx.log_mark()
    # Refused, never let through: a caller ID used as a name must not switch the limit off.
    out, result = pbx.fn("${MCDRATE(%s)}" % args)
    assert out == "0"
    assert result in ("MEMCACHED_ARGUMENT_NEEDED", "MEMCACHED_KEY_TOO_LONG", "MEMCACHED_BAD_KEY_PROVIDED")
    log = pbx.log_since(mark)
    assert complaint in log
    assert "MCDRATE(name,limit,period[,options])" in log
    assert rate_keys(server.port, "bad") == []


def test_console_and_manager_show_the_rates_decided_lately(server):
    from harness.ami import Ami
    ast = Asterisk(read_file("extensions.conf"), conf(server), ami=True)
    try:
        pbx = Pbx(ast)
        name = "shown_%d" % (time.time_ns() % 10**6)
        assert [pbx.fn("${MCDRATE(%s,2,1m)}" % name)[0] for _ in range(3)] == ["1", "1", "0"]
        assert pbx.fn("${MCDRATE(%s,9,1h,fa)}" % name)[0] == "1"
        # A peek is no decision: not shown.
        pbx.fn("${MCDRATE(peeked_%s,2,1m,p)}" % name)
        rows = [l.split() for l in ast.cli("memcached show rates").splitlines()]
        assert [r for r in rows if r and r[0].startswith("peeked_")] == []
        mine = [r[:5] for r in rows if r and r[0] == name]
        assert mine == [[name, "9/3600s,af", "1", "1", "0"], [name, "2/60s", "2", "2", "1"]]
        ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
        try:
            events = [m for m in ami.action("MemcachedRates") if m.get("Event") == "MemcachedRate"
                      and m.get("Name") == name]
            assert [(e["Limit"], e["Count"], e["Admitted"], e["Refused"]) for e in events] == [
                ("9/3600s,af", "1", "1", "0"), ("2/60s", "2", "2", "1")]
        finally:
            ami.close()
    finally:
        ast.stop()
