"""Groups and locks across Asterisk servers: real channels on two private
Asterisks sharing one memcached, checked by MCDGROUP_COUNT, by the results the
channels record, and by an independent client. Leases are short (4 s) so that
healing is seen within the run; every wait polls until a generous deadline."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, Pbx, general, read_file
from harness.ami import Ami
from harness.pbx import MODULES, Asterisk
from harness.servers import Memcached

LEASE = 4


def conf(server, node, *lines, lease=LEASE):
    return general("server=" + server.address, "prefixkey=" + PREFIX, "node_id=" + node,
                   "group_lease=%d" % lease, "retry_timeout=1", *lines)


@pytest.fixture
def servers():
    server = Memcached()
    asterisks = {}

    def start(node, *lines, **options):
        asterisks[node] = Asterisk(read_file("extensions.conf"), conf(server, node, *lines), **options)
        return asterisks[node]

    yield server, start, asterisks
    for ast in asterisks.values():
        ast.stop()
    server.stop()


def count(ast, group, category="cat"):
    return ast.eval("MCDGROUP_COUNT(%s@%s)" % (group, category))


def members(ast, server, group, how_many, limit=0, category="cat"):
    """Originate how_many member channels on ast (at once), each joining group."""
    ast.cli("dialplan set global GROUP " + group)
    ast.cli("dialplan set global GROUP_CATEGORY " + category)
    ast.cli("dialplan set global GROUP_LIMIT %d" % limit)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: ast.cli("channel originate Local/member@tests application Wait 600"),
                      range(how_many)))


def results(server):
    return (Client(server.client_address).get(PREFIX + "group_results") or b"").split()


def wait_results(server, how_many):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(results(server)) < how_many:
        time.sleep(0.1)
    assert len(results(server)) == how_many


def test_a_limit_admits_exactly_up_to_it_and_hangups_empty_the_group(servers):
    server, start, _ = servers
    east = start("east")
    Client(server.client_address).set(PREFIX + "group_results", b"")
    members(east, server, "trunk1", 10)
    wait_results(server, 10)
    assert count(east, "trunk1") == "10"
    members(east, server, "trunk1", 10, limit=15)
    wait_results(server, 20)
    assert results(server).count(b"MEMCACHED_SUCCESS") == 15
    assert results(server).count(b"MEMCACHED_GROUP_FULL") == 5
    assert count(east, "trunk1") == "15"
    # Every channel hangs up: the group empties, with no hangup handler in the dialplan.
    east.cli("channel request hangup all")
    east.wait_for(lambda: count(east, "trunk1") == "0")


def test_200_channels_on_two_asterisks_race_for_50_places(servers, figures):
    server, start, _ = servers
    east, west = start("east"), start("west")
    Client(server.client_address).set(PREFIX + "group_results", b"")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda ast: members(ast, server, "race", 100, limit=50), (east, west)))
    wait_results(server, 200)
    assert results(server).count(b"MEMCACHED_SUCCESS") == 50
    assert results(server).count(b"MEMCACHED_GROUP_FULL") == 150
    assert count(east, "race") == count(west, "race") == "50"
    figures("MCDGROUP with a limit of 50: 200 channels on two Asterisks, 50 admitted, 150 refused, "
            "in %.1f s" % (time.monotonic() - started))
    east.cli("channel request hangup all")
    west.cli("channel request hangup all")
    east.wait_for(lambda: count(east, "race") == "0")


@pytest.mark.long
def test_a_killed_asterisk_stops_counting_within_the_lease_and_restarts_without_double_count(
        servers, figures):
    server, start, asterisks = servers
    east, west = start("east"), start("west")
    Client(server.client_address).set(PREFIX + "group_results", b"")
    members(east, server, "heal", 5)
    members(west, server, "heal", 20)
    wait_results(server, 25)
    assert count(east, "heal") == "25"
    # kill -9: no hangup runs, no member leaves.
    west.proc.kill()
    west.proc.wait()
    killed = time.monotonic()
    east.wait_for(lambda: count(east, "heal") == "5", limit=10 * LEASE)
    healed = time.monotonic() - killed
    # The same node, started again, has 3 members: counted once, tick after tick.
    west.stop()
    west = start("west")
    Client(server.client_address).set(PREFIX + "group_results", b"")
    members(west, server, "heal", 3)
    wait_results(server, 3)
    seen = set()
    until = time.monotonic() + 2 * LEASE
    while time.monotonic() < until:
        seen.add(count(east, "heal"))
        time.sleep(0.2)
    assert seen == {"8"}
    figures("MCDGROUP, group_lease=%d s: an Asterisk with 20 members killed -9, the other saw the "
            "count fall from 25 to the truth (5) after %.1f s; restarted with the same node_id and "
            "3 members, the count stayed 8 for %d s" % (LEASE, healed, 2 * LEASE))


def test_the_count_comes_back_after_memcached_restarts(servers, figures):
    server, start, _ = servers
    east = start("east")
    Client(server.client_address).set(PREFIX + "group_results", b"")
    members(east, server, "restart", 50)
    wait_results(server, 50)
    assert count(east, "restart") == "50"
    server.stop()
    again = Memcached(port=server.port)
    try:
        restarted = time.monotonic()
        assert count(east, "restart") in ("0", "")
        east.wait_for(lambda: count(east, "restart") == "50", limit=10 * LEASE)
        figures("MCDGROUP, group_lease=%d s: memcached restarted under 50 members; the count was "
                "back at 50 after %.1f s" % (LEASE, time.monotonic() - restarted))
        east.cli("channel request hangup all")
    finally:
        again.stop()


def test_channels_know_their_group_one_per_category(servers):
    server, start, _ = servers
    pbx = Pbx(start("east"))
    out, result = pbx.steps(["Set(MCDGROUP(cat)=first)", "Set(MCDGROUP(other)=elsewhere)",
                             "Set(A=${MCDGROUP(cat)})", "Set(MCDGROUP(cat)=second)",
                             "Set(C1=${MCDGROUP_COUNT(first@cat)})", "Set(C2=${MCDGROUP_COUNT(@cat)})"],
                            "${A}/${MCDGROUP(cat)}/${MCDGROUP(other)}/${C1}/${C2}")
    assert (out, result) == ("first/second/elsewhere/0/1", "MEMCACHED_SUCCESS")
    # The channel has ended: it left both its groups.
    assert count(pbx.ast, "second") == "0" and count(pbx.ast, "elsewhere", "other") == "0"
    # Read with a write's arguments: the limit is no part of the category.
    assert pbx.steps(["Set(MCDGROUP(cat,5)=third)"], "${MCDGROUP(cat,5)}") == ("third", "MEMCACHED_SUCCESS")
    # Refused for its arguments: the syntax is logged, once, and nothing else.
    mark = pbx.log_mark()
    assert pbx.fn("${MCDGROUP_COUNT()}") == ("", "MEMCACHED_ARGUMENT_NEEDED")
    assert pbx.steps(["Set(MCDGROUP(cat,0)=x)"], "") == ("", "MEMCACHED_ARGUMENT_NEEDED")
    log = pbx.log_since(mark)
    assert log.count("Syntax: MCDGROUP_COUNT(") == 1 and log.count("Syntax: Set(MCDGROUP(") == 1
    assert not [line for line in log.splitlines() if "WARNING" in line and "ARGUMENT_NEEDED" in line]
    # A ':' would let two groups share a counter: refused in groups and categories.
    assert pbx.steps(["Set(MCDGROUP(a:b)=x)"], "") == ("", "MEMCACHED_BAD_KEY_PROVIDED")
    assert pbx.steps(["Set(MCDGROUP(cat)=x:y)"], "") == ("", "MEMCACHED_BAD_KEY_PROVIDED")


def test_a_picked_up_call_keeps_the_memberships_of_both_channels(servers):
    server, start, _ = servers
    ast = start("east", ami=True, modules=MODULES + ["app_dial.so", "app_directed_pickup.so", "bridge_simple.so"])
    ast.cli("dialplan set global GROUP picked")
    ast.cli("channel originate Local/pickup-caller@tests application Wait 600")
    ast.wait_for(lambda: count(ast, "picked", "callee") == "1")
    ast.cli("channel originate Local/pickup-picker@tests application Wait 600")
    ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)

    def groups_of_the_picked_up_channel():
        for line in ast.cli("core show channels concise").splitlines():
            name = line.split("!")[0]
            found = [ami.action("Getvar", Channel=name, Variable="MCDGROUP(%s)" % category)[0].get("Value")
                     for category in ("callee", "picker")]
            if found[0] == "picked":
                return found
        return None

    try:
        # The picker's membership came with the masquerade: the channel that goes on sees both.
        ast.wait_for(lambda: count(ast, "picked", "picker") == "1"
                     and groups_of_the_picked_up_channel() == ["picked", "picked"])
    finally:
        ami.close()
    ast.cli("channel request hangup all")
    ast.wait_for(lambda: count(ast, "picked", "callee") == "0" and count(ast, "picked", "picker") == "0")


def test_locks_serialize_800_increments_on_two_asterisks(servers, figures):
    server, start, _ = servers
    east, west = start("east", "lock_wait=30000"), start("west", "lock_wait=30000")
    client = Client(server.client_address)
    for name, value in (("locked_value", b"0"), ("lock_failures", b""), ("lock_done", b"")):
        client.set(PREFIX + name, value)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda ast: ast.cli("channel originate Local/locked-increments@tests "
                                          "application Wait 0"), [east, west] * 20))
    east.wait_for(lambda: len(client.get(PREFIX + "lock_done") or b"") == 40, limit=120)
    assert client.get(PREFIX + "lock_failures") == b""
    assert client.get(PREFIX + "locked_value") == b"800"
    # Every lock was released: none is left.
    assert client.get(PREFIX + "_mcd:lock:increments") is None
    figures("MCDLOCK: 40 channels on two Asterisks, 20 locked read-and-increment rounds each: "
            "value 800 exact, in %.1f s" % (time.monotonic() - started))


def test_an_expired_lock_taken_by_another_is_not_released_by_its_old_owner(servers):
    server, start, _ = servers
    ast = start("east")
    client = Client(server.client_address)
    key = PREFIX + "_mcd:lock:stale"
    ast.cli("dialplan set global LOCK_NAME stale")
    ast.cli("dialplan set global LOCK_TTL 1")
    ast.cli("dialplan set global LOCK_HOLD 4")
    ast.cli("channel originate Local/holder-old@tests application Wait 0")
    ast.wait_for(lambda: ast.global_var("HOLDER_old_TOOK") == "1")
    # Its ttl of 1 s runs out while the old owner still waits.
    ast.wait_for(lambda: client.get(key) is None)
    ast.cli("dialplan set global LOCK_TTL 60")
    ast.cli("dialplan set global LOCK_HOLD 6")
    ast.cli("channel originate Local/holder-new@tests application Wait 0")
    ast.wait_for(lambda: ast.global_var("HOLDER_new_TOOK") == "1")
    # The old owner's release comes: refused, and the new owner keeps the lock.
    ast.wait_for(lambda: ast.global_var("HOLDER_old") == "1,0,MEMCACHED_NOT_LOCKED")
    assert b"holder-new" in client.get(key)
    ast.wait_for(lambda: ast.global_var("HOLDER_new") == "1,1,MEMCACHED_SUCCESS")
    assert client.get(key) is None


def test_a_lock_ends_with_its_channel_and_trylock_never_waits(servers, figures):
    server, start, _ = servers
    pbx = Pbx(start("east", "lock_wait=2000"))
    client = Client(server.client_address)
    # Taken and never released: gone when the channel ends.
    assert pbx.steps(["Set(L=${MCDLOCK(ends)})"], "${L}") == ("1", "MEMCACHED_SUCCESS")
    pbx.ast.wait_for(lambda: client.get(PREFIX + "_mcd:lock:ends") is None)
    # Held by another: MCDTRYLOCK answers at once, MCDLOCK after lock_wait.
    client.set(PREFIX + "_mcd:lock:held", b"someone else")
    assert pbx.steps(["Set(L=${MCDTRYLOCK(held)})"], "${L}") == ("0", "MEMCACHED_LOCK_BUSY")
    tried = pbx.elapsed
    assert pbx.steps(["Set(L=${MCDLOCK(held)})"], "${L}") == ("0", "MEMCACHED_LOCK_BUSY")
    figures("a lock held elsewhere: MCDTRYLOCK answered after %.3f s, MCDLOCK with lock_wait=2000 "
            "after %.3f s" % (tried, pbx.elapsed))
    assert pbx.steps(["Set(U=${MCDUNLOCK(held)})"], "${U}") == ("0", "MEMCACHED_NOT_LOCKED")
    assert client.get(PREFIX + "_mcd:lock:held") == b"someone else"
    # Taken twice by the same channel: held, as with LOCK().
    assert pbx.steps(["Set(A=${MCDLOCK(twice)})", "Set(B=${MCDLOCK(twice)})"], "${A}${B}") \
        == ("11", "MEMCACHED_SUCCESS")


def test_console_and_manager_show_groups_and_locks(servers):
    server, start, _ = servers
    ast = start("east", ami=True)
    Client(server.client_address).set(PREFIX + "group_results", b"")
    members(ast, server, "shown", 3)
    wait_results(server, 3)
    ast.cli("dialplan set global LOCK_NAME shown_lock")
    ast.cli("dialplan set global LOCK_TTL 60")
    ast.cli("dialplan set global LOCK_HOLD 30")
    ast.cli("channel originate Local/holder-shown@tests application Wait 0")
    ast.wait_for(lambda: ast.global_var("HOLDER_shown_TOOK") == "1")
    groups = ast.cli("memcached show groups")
    assert "This Asterisk is node 'east'" in groups
    row = [l.split() for l in groups.splitlines() if " shown " in l]
    assert row == [["cat", "shown", "3", "3", "3"]]
    locks = ast.cli("memcached show locks")
    assert [l.split()[0] for l in locks.splitlines()[1:-1]] == ["shown_lock"]
    assert "Local/holder-shown@tests" in locks
    ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    try:
        messages = ami.action("MemcachedGroups")
        group = [m for m in messages if m.get("Event") == "MemcachedGroup" and m["Group"] == "shown"]
        assert [(g["Category"], g["Here"], g["Cluster"]) for g in group] == [("cat", "3", "3")]
        assert messages[-1]["Node"] == "east"
        lock = [m for m in ami.action("MemcachedLocks") if m.get("Event") == "MemcachedLock"]
        assert [(l["Lock"], l["TTL"]) for l in lock] == [("shown_lock", "60")]
    finally:
        ami.close()
    ast.cli("channel request hangup all")
