"""The module's own keys (groups, locks, their registry) live under _mcd: after the
prefix: no dialplan, console or manager call can name them, and words another client
writes into the registry's lists never reach the console or the manager raw."""

import time

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, memcached_keys, read_file
from harness.ami import Ami
from harness.pbx import Asterisk
from harness.servers import Memcached
from test_groups import conf, members, wait_results


@pytest.fixture
def server():
    server = Memcached()
    yield server
    server.stop()


@pytest.fixture
def east(server):
    """An Asterisk (node east, with the manager) on server, and an independent client."""
    ast = Asterisk(read_file("extensions.conf"), conf(server, "east"), ami=True)
    client = Client(server.client_address)
    client.set(PREFIX + "group_results", b"")
    yield ast, client
    ast.stop()


def test_every_key_the_module_writes_for_itself_is_refused_to_the_dialplan(server, east):
    ast, client = east
    members(ast, server, "ns_group", 2)
    wait_results(server, 2)
    ast.cli("dialplan set global LOCK_NAME ns_lock")
    ast.cli("dialplan set global LOCK_TTL 60")
    ast.cli("dialplan set global LOCK_HOLD 30")
    ast.cli("channel originate Local/holder-ns@tests application Wait 0")
    ast.wait_for(lambda: ast.global_var("HOLDER_ns_TOOK") == "1")
    # The first join listed the node (heartbeat, list) and the group (index, count, counter).
    ast.wait_for(lambda: client.get(PREFIX + "_mcd:nodes") is not None)
    own = sorted(k[len(PREFIX):] for k in memcached_keys(server.port)
                 if k.startswith(PREFIX + "_mcd:"))
    kinds = {k.split(":")[1] for k in own}
    assert {"g", "lock", "nodes", "hb", "ix"} <= kinds, own
    for key in own:
        before = client.get(PREFIX + key)
        assert ast.eval("MCD(%s)" % key) == ""
        ast.cli("dialplan set global NS_KEY " + key)
        pbx_result = ast.eval("MCDCOUNTER(%s,-9)" % key)
        assert pbx_result == ""
        ast.cli("channel originate Local/ns-write@tests application Wait 0")
        ast.wait_for(lambda: ast.global_var("NS_DONE") == key)
        assert ast.global_var("NS_RESULTS") == ",".join(["MEMCACHED_KEY_RESERVED"] * 4)
        assert client.get(PREFIX + key) == before, key
    # The console and the manager go through the same check.
    out = ast.cli("memcached set _mcd:nodes forged")
    assert "MEMCACHED_KEY_RESERVED" in out
    ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    try:
        reply = ami.action("MemcachedSet", Key="_mcd:nodes", Value="forged")
        assert any(m.get("Result") == "MEMCACHED_KEY_RESERVED" for m in reply), reply
    finally:
        ami.close()
    assert b"forged" not in (client.get(PREFIX + "_mcd:nodes") or b"")


@pytest.mark.long
def test_control_bytes_written_into_the_registry_never_reach_console_or_manager(server, east):
    ast, client = east
    members(ast, server, "clean_group", 1)
    ast.wait_for(lambda: client.get(PREFIX + "_mcd:nodes") is not None)
    inc = client.get(PREFIX + "_mcd:nodes").split()[0].split(b"/")[1].decode()
    # Another application appends words with escape sequences and line ends to every index
    # shard of this Asterisk, and to the list of Asterisks.
    for shard in range(32):
        key = PREFIX + "_mcd:ix:%s:%d" % (inc, shard)
        if not client.append(key, b" cat:evil\x1b[2J\r\nEvent:\x20Forged"):
            client.set(key, b" cat:evil\x1b[2J\r\nEvent:\x20Forged")
    client.append(PREFIX + "_mcd:nodes", b" bad\rnode")
    time.sleep(1.5)
    shown = ast.cli("memcached show groups")
    assert "clean_group" in shown
    assert "\x1b" not in shown and "Forged" not in shown and "evil" not in shown
    ami = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    try:
        messages = ami.action("MemcachedGroups")
        assert any(m.get("Group") == "clean_group" for m in messages)
        text = repr(messages)
        assert "\\x1b" not in text and "Forged" not in text and "evil" not in text
    finally:
        ami.close()
    assert "\x1b" not in ast.log()
