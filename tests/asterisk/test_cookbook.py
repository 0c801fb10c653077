"""The README's cookbook, run for real: doc/cookbook.conf in a real Asterisk
against real memcached. The README must show the recipes exactly as tested."""

import os
import re
import time

import pytest
from pymemcache.client.base import Client

from conftest import HERE, general, meta_ttl, read_file
from harness.pbx import MODULES, Asterisk

ROOT = os.path.join(HERE, "..", "..")
COOKBOOK = open(os.path.join(ROOT, "doc", "cookbook.conf")).read()


def start(memcached, node):
    return Asterisk(COOKBOOK + read_file("cookbook-tests.conf") + read_file("extensions.conf"),
                    general("server=" + memcached.address, "node_id=" + node),
                    modules=MODULES + ["func_channel.so", "app_dial.so", "func_callerid.so",
                                       "bridge_simple.so"])


@pytest.fixture
def cookbook(memcached):
    asterisks = []

    def make():
        # Two Asterisks on one host share an entity ID: each gets a node_id of its own.
        asterisks.append(start(memcached, "cookbook%d" % len(asterisks)))
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
                 "a blocklist a web application keeps"):
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
