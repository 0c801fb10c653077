"""The README's cookbook, run for real: doc/cookbook.conf in a real Asterisk
against real memcached. The README must show the recipes exactly as tested."""

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymemcache.client.base import Client

from conftest import HERE, general, meta_ttl, read_file
from harness.pbx import MODULES, Asterisk

ROOT = os.path.join(HERE, "..", "..")
COOKBOOK = open(os.path.join(ROOT, "doc", "cookbook.conf")).read()


def start(memcached, node, ami=False):
    return Asterisk(COOKBOOK + read_file("cookbook-tests.conf") + read_file("extensions.conf"),
                    general("server=" + memcached.address, "node_id=" + node),
                    modules=MODULES + ["func_channel.so", "app_dial.so", "func_callerid.so",
                                       "bridge_simple.so", "func_cut.so", "app_userevent.so"],
                    ami=ami)


@pytest.fixture
def cookbook(memcached):
    asterisks = []

    def make(ami=False):
        # Two Asterisks on one host share an entity ID: each gets a node_id of its own.
        asterisks.append(start(memcached, "cookbook%d" % len(asterisks), ami))
        return asterisks[-1]

    yield make
    for ast in asterisks:
        ast.stop()


def far_ends(ast):
    """Calls the far end has answered: one ";2" half of a Local far-end channel each."""
    return len(re.findall(r"^Local/far-end@cookbook-test-\w+;2!", ast.cli("core show channels concise"),
                          re.M))


def wait_until(condition, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def recipe(name):
    """The lines of one recipe in doc/cookbook.conf, from its heading to the next."""
    return re.search(r"; --- recipe: %s ---\n(.*?)(?=\n; --- recipe|\Z)" % re.escape(name),
                     COOKBOOK, re.S).group(1).strip()


def test_readme_shows_each_recipe_as_tested():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for name in ("a concurrent-call limit per trunk", "cache a slow lookup for five minutes",
                 "a blocklist a web application keeps", "a carrier's calls-per-second cap on a trunk",
                 "a daily quota of international calls per account",
                 "three wrong PINs per caller per 10 minutes"):
        assert recipe(name) in readme, name


def calls(ast):
    """The calls on trunk 1 across the cluster, as the dialplan counts them."""
    return ast.eval("MCDGROUP_COUNT(trunk1@trunks)")


def test_call_limit_admits_three_and_releases_every_slot(cookbook, memcached):
    ast = cookbook()
    for n in range(5):
        ast.cli("channel originate Local/limit-555100%d@cookbook-test application Wait 120" % n)
    # Three calls reach the far end; the other two are refused.
    assert wait_until(lambda: far_ends(ast) == 3 and calls(ast) == "3")
    time.sleep(0.5)
    assert far_ends(ast) == 3 and calls(ast) == "3"
    # Calls that die (here: hung up from the console) still release their place.
    ast.cli("channel request hangup all")
    assert wait_until(lambda: calls(ast) == "0")
    assert far_ends(ast) == 0


def test_call_limit_is_shared_by_two_asterisk_servers(cookbook, memcached):
    east, west = cookbook(), cookbook()
    for n in range(3):
        east.cli("channel originate Local/limit-555200%d@cookbook-test application Wait 120" % n)
    assert wait_until(lambda: far_ends(east) == 3)
    for n in range(2):
        west.cli("channel originate Local/limit-555300%d@cookbook-test application Wait 120" % n)
    # West sees east's three calls: its own two are refused.
    assert wait_until(lambda: calls(west) == "3" and far_ends(west) == 0)
    time.sleep(0.5)
    assert (far_ends(east), far_ends(west), calls(west)) == (3, 0, "3")
    east.cli("channel request hangup all")
    assert wait_until(lambda: calls(west) == "0")


def test_cached_lookup_runs_once_then_serves_from_memcached(cookbook, memcached):
    ast = cookbook()
    mc = Client(("127.0.0.1", memcached.port))
    mc.set("slow_lookups", b"0")
    for _ in range(3):
        ast.cli("dialplan set global NAME_5554001 -")
        ast.cli("channel originate Local/lookup-5554001@cookbook-test application Wait 0")
        assert wait_until(lambda: ast.globals().get("NAME_5554001") == "Caller 5554001")
    assert mc.get("slow_lookups") == b"1"
    assert mc.get("cidname_5554001") == b"Caller 5554001"
    assert 290 <= meta_ttl(memcached.port, "cidname_5554001") <= 300


def test_blocklist_written_by_a_web_app_stops_the_call(cookbook, memcached):
    ast = cookbook()
    web_app = Client(("127.0.0.1", memcached.port))
    web_app.set("blocked_5556666", b"1")
    for number in ("5556666", "5557777"):
        ast.cli("channel originate Local/block-%s@cookbook-test application Wait 0" % number)
        assert wait_until(lambda: ast.globals().get("ENDED_" + number) == "1")
    found = ast.globals()
    assert "PASSED_5556666" not in found
    assert found.get("PASSED_5557777") == "1"


def test_calls_per_second_cap_is_shared_by_two_asterisk_servers(cookbook, memcached):
    east, west = cookbook(), cookbook()
    mc = Client(("127.0.0.1", memcached.port))
    mc.set("far_end_calls", b"0")
    started = time.monotonic()
    # 30 new calls at once, half on each server, against a cap of 10 a second.
    for n in range(15):
        for ast in (east, west):
            ast.cli("channel originate Local/cps-%d@cookbook-test application Wait 120" % n)
    burst = time.monotonic() - started
    assert wait_until(lambda: int(mc.get("far_end_calls")) >= 10)
    time.sleep(0.5)
    reached = int(mc.get("far_end_calls"))
    # 10 in each second the burst lasted, at most (a second and a bit per 10: see the README).
    assert 10 <= reached <= 10 * (1 + int(burst / 1.05)), (reached, burst)
    for ast in (east, west):
        ast.cli("channel request hangup all")


@pytest.mark.long
def test_daily_quota_locks_the_account_out_and_tells_the_manager(cookbook, memcached):
    from harness.ami import Ami
    ast = cookbook(ami=True)
    mc = Client(("127.0.0.1", memcached.port))
    mc.set("far_end_calls", b"0")
    account = "acct%d" % (time.time_ns() % 10**6)
    ast.cli("dialplan set global TRUNK1 Local/far-end-brief@cookbook-test")
    ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    try:
        # 50 calls, 8 at a time: all reach the trunk.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: ast.cli("channel originate Local/quota-%s@cookbook-test "
                                            "application Wait 5" % account), range(50)))
        assert wait_until(lambda: mc.get("far_end_calls") == b"50")
        # The 51st trips the lock (and tells the manager), the 52nd meets it.
        for n in range(2):
            ast.cli("dialplan set global ENDED_intl%s 0" % account)
            ast.cli("channel originate Local/quota-%s@cookbook-test application Wait 5" % account)
            assert wait_until(lambda: ast.globals().get("ENDED_intl" + account) == "1")
        assert mc.get("far_end_calls") == b"50"
        assert mc.get("intl_locked_" + account) == b"1"
        assert 3590 <= meta_ttl(memcached.port, "intl_locked_" + account) <= 3600
        events = ami.wait_for_event(lambda m: m.get("UserEvent") == "IntlQuotaReached", limit=10)
        assert (events["Account"], events["Calls"]) == (account, "50")
    finally:
        ami.close()


def test_three_wrong_pins_lock_the_caller_out(cookbook, memcached):
    ast = cookbook()
    caller, other = "555%04d" % (time.time_ns() % 10**4), "556%04d" % (time.time_ns() % 10**4)

    def attempt(number, right):
        before = ast.globals().get("PIN_" + number, "")
        ast.cli("channel originate Local/code-%s-%d@cookbook-test application Wait 0" % (number, right))
        assert wait_until(lambda: ast.globals().get("PIN_" + number, "") != before)
        return ast.globals()["PIN_" + number].split()[-1]

    assert [attempt(caller, 0) for _ in range(3)] == ["wrong"] * 3
    # Locked now, even with the right PIN; another caller is not.
    assert attempt(caller, 1) == "locked"
    assert attempt(other, 0) == "wrong"
    assert attempt(other, 1) == "ok"
