"""memcached.conf at load and reload, clusters, lazy connection, a dead server.
These start Asterisk instances of their own."""

import os

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, connections_to, general
from harness.servers import Memcached
from harness.ports import free_port


def module_running(pbx):
    out = pbx.ast.cli("module show like res_memcached")
    return "Running" in out and "Not Running" not in out


def test_unknown_option_is_logged_by_name_and_line_and_ignored(start_pbx, memcached, key):
    pbx = start_pbx(general("server=" + memcached.address, "prefixkey=" + PREFIX,
                            "no_such_option=1"))
    assert module_running(pbx)
    assert "memcached.conf line 4: unknown option 'no_such_option', ignored" in pbx.ast.log()
    assert pbx.app("mcdset(%s,v)" % key)[1] == "MEMCACHED_SUCCESS"


@pytest.mark.parametrize("line, message", [
    ("ttl=abc", "line 3: ttl must be a whole number from 0 to 315360000, not 'abc'"),
    ("timeout=soon", "line 3: timeout must be a whole number"),
    ("binary_proto=maybe", "line 3: binary_proto must be auto, yes or no, not 'maybe'"),
    ("server=127.0.0.1:99999", "line 3: port in '127.0.0.1:99999' is not a number from 1 to 65535"),
    ("hash=sha1", "line 3: hash 'sha1' is not one of"),
    ("prefixkey=a b", "line 3: prefixkey may not contain spaces or control characters"),
])
def test_bad_value_at_load_still_loads_and_every_call_gets_no_servers(start_pbx, memcached, line,
                                                                      message):
    pbx = start_pbx(general("server=" + memcached.address, line))
    # Loaded with everything registered: the dialplan reaches its end, with a result.
    assert module_running(pbx)
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_NO_SERVERS"
    assert pbx.app("mcdappend(k,v)")[1] == "MEMCACHED_NO_SERVERS"
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_NO_SERVERS")
    log = pbx.ast.log()
    assert message in log
    assert ("memcached.conf cannot be used (see the errors above): fix it and run "
            "'module reload res_memcached'") in log
    # The calls' warnings say why, once per window.
    warnings = [l for l in log.splitlines() if "MEMCACHED_NO_SERVERS: memcached.conf cannot" in l]
    assert len(warnings) == 1, warnings
    # A fixed file, reloaded, serves calls.
    pbx.reload(general("server=" + memcached.address))
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_SUCCESS"


LATE_NAME = "mcd-late-dns.test"


def test_a_name_that_resolves_only_after_boot_is_used_with_no_reload(start_pbx, memcached):
    with open("/etc/hosts") as f:
        hosts = f.read()
    assert LATE_NAME not in hosts
    try:
        pbx = start_pbx(general("server=%s:%d" % (LATE_NAME, memcached.port), "prefixkey=" + PREFIX))
        assert module_running(pbx)
        assert pbx.app("mcdset(late,v)")[1] == "MEMCACHED_NO_SERVERS"
        assert pbx.fn("${MCDCOUNTER(latecount,1)}") == ("", "MEMCACHED_NO_SERVERS")
        assert "cannot resolve server '%s'" % LATE_NAME in pbx.ast.log()
        with open("/etc/hosts", "a") as f:
            f.write("127.0.0.1\t%s\n" % LATE_NAME)
        pbx.ast.wait_for(lambda: pbx.app("mcdset(late,v)")[1] == "MEMCACHED_SUCCESS", limit=30)
        assert Client(("127.0.0.1", memcached.port)).get(PREFIX + "late") == b"v"
        assert "res_memcached: servers 127.0.0.1:%d;" % memcached.port in pbx.ast.log()
    finally:
        with open("/etc/hosts", "w") as f:
            f.write(hosts)


def test_no_config_file_loads_the_defaults(start_pbx):
    pbx = start_pbx("")
    os.remove(os.path.join(pbx.ast.etc, "memcached.conf"))
    pbx.ast.cli("module unload res_memcached")
    pbx.ast.cli("module load res_memcached")
    assert module_running(pbx)
    assert "memcached.conf not found: using the defaults (server localhost:11211)" in pbx.ast.log()


@pytest.mark.parametrize("text", ["", "; only a comment\n", "[general]\n"])
def test_empty_config_file_loads_the_defaults(start_pbx, text):
    pbx = start_pbx(text)
    assert module_running(pbx)
    assert "res_memcached: servers 127.0.0.1:11211;" in pbx.ast.log()


def test_unknown_section_is_logged_and_ignored(start_pbx, memcached):
    pbx = start_pbx(general("server=" + memcached.address) + "[servers]\nserver=10.9.9.9\n")
    assert module_running(pbx)
    assert "memcached.conf: section [servers] is unknown and ignored" in pbx.ast.log()
    assert "res_memcached: servers %s;" % memcached.address in pbx.ast.log()


def test_reload_swaps_in_a_new_configuration(pbx, mc, memcached, key):
    out = pbx.reload(general("server=" + memcached.address, "keyprefix=other_"))
    assert "Module 'res_memcached' reloaded successfully." in out
    pbx.app("mcdset(%s,v)" % key)
    assert mc.get("other_" + key) == b"v"
    assert mc.get(PREFIX + key) is None


def test_broken_reload_keeps_the_working_configuration(pbx, mc, memcached, key):
    mark = pbx.log_mark()
    pbx.reload(general("server=" + memcached.address, "prefixkey=other_", "timeout=soon"))
    log = pbx.log_since(mark)
    assert "memcached.conf line 4: timeout must be a whole number from 1 to 60000, not 'soon'" in log
    assert "memcached.conf not reloaded: the previous configuration stays in use" in log
    assert pbx.app("mcdset(%s,v)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"v"


@pytest.mark.parametrize("hash_name", ["default", "md5", "crc", "fnv1_64", "fnv1a_64",
                                       "fnv1_32", "fnv1a_32", "murmur", "jenkins"])
def test_every_hash_function_is_accepted(pbx, mc, memcached, key, hash_name):
    out = pbx.reload(general("server=" + memcached.address, "prefixkey=" + PREFIX,
                             "hash=" + hash_name))
    assert "reloaded successfully" in out
    assert pbx.app("mcdset(%s,%s)" % (key, hash_name))[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == hash_name.encode()


def test_hash_missing_from_the_library_is_refused_clearly(pbx, mc, memcached, key):
    # Debian builds libmemcached without hsieh: the reload must say so and change nothing.
    mark = pbx.log_mark()
    out = pbx.reload(general("server=" + memcached.address, "prefixkey=other_", "hash=hsieh"))
    assert "reload failure" in out
    assert "hash hsieh is not built into this libmemcached" in pbx.log_since(mark)
    assert pbx.app("mcdset(%s,v)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"v"
    # The next good file is taken, and said to be.
    out = pbx.reload(general("server=" + memcached.address, "prefixkey=other_"))
    assert "reloaded successfully" in out
    assert pbx.app("mcdset(%s,w)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get("other_" + key) == b"w"


def test_connection_is_opened_on_first_use_only(start_pbx):
    server = Memcached()
    try:
        pbx = start_pbx(general("server=" + server.address))
        assert connections_to(pbx.ast.proc.pid, server.port) == 0
        assert pbx.app("mcdset(lazy,v)")[1] == "MEMCACHED_SUCCESS"
        # The pool keeps the connection the first call opened.
        assert connections_to(pbx.ast.proc.pid, server.port) == 1
    finally:
        server.stop()


def test_dead_server_gives_a_result_and_the_call_goes_on(start_pbx):
    pbx = start_pbx(general("server=127.0.0.1:%d" % free_port(), "retry_timeout=60",
                            "server_failure_limit=2"))
    assert module_running(pbx)
    # run() returning at all means the dialplan reached its last line.
    assert pbx.app("mcdset(k,v)")[1] == "MEMCACHED_CONNECTION_FAILURE"
    assert pbx.app("mcddelete(k)")[1] == "MEMCACHED_CONNECTION_FAILURE"
    # After two failures the server is left alone for retry_timeout: calls fail at once.
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")


def test_server_given_by_host_name_is_resolved(start_pbx, memcached):
    pbx = start_pbx(general("server=localhost:%d" % memcached.port, "prefixkey=" + PREFIX))
    # Resolved once at load, IPv4 first, and logged as the address in use.
    assert "res_memcached: servers 127.0.0.1:%d;" % memcached.port in pbx.ast.log()
    assert pbx.app("mcdset(byname,v)")[1] == "MEMCACHED_SUCCESS"
    assert Client(("127.0.0.1", memcached.port)).get(PREFIX + "byname") == b"v"


def test_reload_of_an_unchanged_file_keeps_a_resting_server_resting(start_pbx, hung):
    pbx = start_pbx(general("server=" + hung.address, "timeout=300", "connect_timeout=300",
                            "server_failure_limit=1", "retry_timeout=60"))
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_TIMEOUT")
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
    out = pbx.ast.cli("module reload res_memcached")
    pbx.ast.wait_for(lambda: "memcached.conf unchanged, nothing to reload" in pbx.ast.log())
    # Still resting: the next call fails at once instead of waiting for its timeout.
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED"), out
    # A changed file that keeps the server keeps what is known of it.
    pbx.reload(general("server=" + hung.address, "timeout=301", "connect_timeout=300",
                       "server_failure_limit=1", "retry_timeout=60"))
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
