"""What an administrator has at the console and over AMI, and mcdtouch."""

import pytest

from harness.ami import Ami
from conftest import PREFIX, general, meta_ttl, module_log_lines, stats
from harness.pbx import Asterisk

SECRET = "hunter2-not-shown"


@pytest.fixture(scope="module")
def console(memcached):
    from conftest import Pbx, read_file
    ast = Asterisk(read_file("extensions.conf"),
                   general("server=" + memcached.address, "prefixkey=" + PREFIX,
                           "username=pbx", "password=" + SECRET, "ttl=500"),
                   ami=True)
    yield Pbx(ast)
    ast.stop()


@pytest.fixture
def plain(start_pbx, memcached):
    return start_pbx(general("server=" + memcached.address, "prefixkey=" + PREFIX))


@pytest.fixture
def ami(plain):
    # plain's Asterisk has no AMI: start one of its own with AMI on.
    from conftest import read_file
    ast = Asterisk(read_file("extensions.conf"),
                   open(plain.ast.etc + "/memcached.conf").read(), ami=True)
    client = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    yield client
    client.close()
    ast.stop()


def test_show_settings_lists_every_option_and_hides_the_password(console, memcached):
    out = console.ast.cli("memcached show settings")
    assert "server                 %s" % memcached.address in out
    assert "prefixkey              %s" % PREFIX in out
    assert "ttl                    500 s" in out
    assert "password               (set, not shown)" in out
    for option in ("binary_proto", "hash", "distribution", "max_value_length", "connect_timeout",
                   "timeout", "server_failure_limit", "retry_timeout", "remove_failed_servers",
                   "replicas", "pool_size", "pool_wait", "username"):
        assert "\n" + option + " " in "\n" + out, option
    assert SECRET not in out
    assert SECRET not in console.ast.log()
    # Credentials are set here: fire-and-forget writes are not offered.
    assert "MCDNOREPLY             not offered with SASL or replicas" in out


def test_show_settings_says_whether_noreply_is_offered(plain):
    assert "MCDNOREPLY             offered\n" in plain.ast.cli("memcached show settings")


def test_show_servers_reports_each_server(plain, memcached, mc, key):
    mc.set(PREFIX + key, b"x")
    mc.get(PREFIX + key)
    out = plain.ast.cli("memcached show servers")
    line = [l for l in out.splitlines() if l.startswith(memcached.address)][0]
    fields = line.split()
    assert fields[1] == "up"
    assert fields[2] == stats(memcached.port)["version"]  # what the server itself says
    assert int(fields[3]) >= 1 and int(fields[5]) >= 1


def test_show_servers_says_which_do_not_answer(start_pbx, memcached):
    from harness.ports import free_port
    dead = "127.0.0.1:%d" % free_port()
    pbx = start_pbx(general("server=" + memcached.address, "server=" + dead))
    out = pbx.ast.cli("memcached show servers")
    assert [l.split()[1] for l in out.splitlines() if l.startswith(dead)] == ["no"]


def test_show_stats_counts_calls_and_results_and_resets(plain, key):
    plain.ast.cli("memcached reset stats")
    plain.app("mcdset(%s,v)" % key)
    plain.fn("${MCD(%s)}" % key)
    plain.fn("${MCD(%s_missing)}" % key)
    plain.fn("${MCDCOUNTER(%s_c,1)}" % key)
    rows = {l.split()[0]: l.split() for l in plain.ast.cli("memcached show stats").splitlines()[1:]}
    assert rows["get"][1] == "2" and "MEMCACHED_NOTFOUND=1" in rows["get"]
    assert rows["set"][1] == "1" and len(rows["set"]) == 4
    assert rows["counter"][1] == "1"
    assert int(rows["get"][3]) >= int(rows["get"][2]) > 0
    plain.ast.cli("memcached reset stats")
    rows = {l.split()[0]: l.split() for l in plain.ast.cli("memcached show stats").splitlines()[1:]}
    assert all(row[1:4] == ["0", "0", "0"] for row in rows.values())


def test_cli_operations(plain, mc, key):
    assert plain.ast.cli("memcached set %s hello" % key) == "MEMCACHED_SUCCESS\n"
    assert mc.get(PREFIX + key) == b"hello"
    assert plain.ast.cli("memcached get %s" % key) == "hello\nMEMCACHED_SUCCESS\n"
    assert plain.ast.cli("memcached add %s again" % key) == "MEMCACHED_DATA_EXISTS\n"
    assert plain.ast.cli("memcached incr %s_n 5" % key) == "5\nMEMCACHED_SUCCESS\n"
    assert plain.ast.cli("memcached incr %s_n" % key) == "6\nMEMCACHED_SUCCESS\n"
    assert plain.ast.cli("memcached incr %s_n x" % key) == "MEMCACHED_BAD_INCREMENT\n"
    assert plain.ast.cli("memcached delete %s" % key) == "MEMCACHED_SUCCESS\n"
    assert plain.ast.cli("memcached get %s" % key) == "MEMCACHED_NOTFOUND\n"
    assert "Usage: memcached get KEY" in plain.ast.cli("memcached set onlykey")


def test_cli_get_shows_control_bytes_escaped(plain, mc, key):
    # Another application stored escape sequences and line breaks: the terminal sees them as text.
    mc.set(PREFIX + key, b"red\x1b[31m\r\nforged line\x07 back\\slash\x00end")
    out = plain.ast.cli("memcached get %s" % key)
    assert out == "red\\x1b[31m\\r\\nforged line\\x07 back\\\\slash\\x00end\nMEMCACHED_SUCCESS\n"
    assert "\x1b" not in out and "\r" not in out
    assert "escaped" in plain.ast.cli("core show help memcached get")


def test_warnings_show_what_the_channel_gave_escaped(plain, key):
    # A channel variable or an argument with a line break would otherwise forge a log line.
    mark = plain.log_mark()
    plain.app("mcdset(%s,v)" % key, ttl="5\r\nWARNING[1] forged: line\x1b[2J")
    plain.fn("${MCDCOUNTER(%s,${URIDECODE(1%%0D%%0Aforged)})}" % key)
    # Asterisk's own verbose lines show the raw bytes; the module's lines are whole, and escaped.
    lines = module_log_lines(plain.log_since(mark))
    assert [line.split(": ", 1)[1] for line in lines if "not a whole number" in line] == [
        "MCDTTL '5\\r\\nWARNING[1] forged: line\\x1b[2J' is not a whole number of seconds from 0 "
        "to 315360000: using 0",
        "MCDCOUNTER(%s): increment '1\\r\\nforged' is not a whole number from -4294967295 to "
        "4294967295" % key]
    assert not [line for line in lines if "\x1b" in line or "\r" in line]


def test_cli_completes_the_operation_names(plain):
    out = plain.ast.cli("_command matchesarray \"memcached d\" \"d\"")
    assert "delete" in out


def test_flush_drops_everything_and_is_logged(plain, mc, key):
    mc.set(PREFIX + key, b"x")
    mc.set("another_application_key", b"y")
    assert plain.ast.cli("memcached flush") == "MEMCACHED_SUCCESS\n"
    assert mc.get(PREFIX + key) is None and mc.get("another_application_key") is None
    assert "memcached flush run from the CLI" in plain.ast.log()


def test_mcdtouch_changes_the_ttl_only(plain, mc, memcached, key):
    plain.app("mcdset(%s,kept)" % key)
    assert meta_ttl(memcached.port, PREFIX + key) == -1
    assert plain.app("mcdtouch(%s,120)" % key)[1] == "MEMCACHED_SUCCESS"
    assert 110 <= meta_ttl(memcached.port, PREFIX + key) <= 120
    assert mc.get(PREFIX + key) == b"kept"
    assert plain.app("mcdtouch(%s_missing,120)" % key)[1] == "MEMCACHED_NOTFOUND"
    assert plain.app("mcdtouch(%s,soon)" % key)[1] == "MEMCACHED_ARGUMENT_NEEDED"


def test_ami_get_set_delete_increment(ami, mc, key):
    reply = ami.action("MemcachedSet", Key=key, Value="from ami", TTL="60")[0]
    assert (reply["Response"], reply["Result"]) == ("Success", "MEMCACHED_SUCCESS")
    assert mc.get(PREFIX + key) == b"from ami"
    reply = ami.action("MemcachedGet", Key=key)[0]
    assert (reply["Result"], reply["Value"]) == ("MEMCACHED_SUCCESS", "from ami")
    reply = ami.action("MemcachedIncrement", Key=key + "_n", Increment="7")[0]
    assert (reply["Result"], reply["Value"]) == ("MEMCACHED_SUCCESS", "7")
    assert ami.action("MemcachedDelete", Key=key)[0]["Result"] == "MEMCACHED_SUCCESS"
    reply = ami.action("MemcachedGet", Key=key)[0]
    assert (reply["Result"], reply["Value"]) == ("MEMCACHED_NOTFOUND", "")
    assert ami.action("MemcachedGet")[0]["Response"] == "Error"
    assert ami.action("MemcachedIncrement", Key=key, Increment="x")[0]["Response"] == "Error"


def test_ami_answers_success_for_a_miss_and_error_for_a_refusal(ami, key):
    # A missing key is memcached's answer, not a failure: Success, with the result named.
    for action in ("MemcachedGet", "MemcachedDelete"):
        reply = ami.action(action, Key=key)[0]
        assert (reply["Response"], reply["Result"]) == ("Success", "MEMCACHED_NOTFOUND"), action
        assert "Message" not in reply
    # A key memcached cannot take is refused before anything is sent.
    reply = ami.action("MemcachedSet", Key="two words", Value="v")[0]
    assert (reply["Response"], reply["Message"], reply["Result"]) == (
        "Error", "memcached operation failed (refused)", "MEMCACHED_BAD_KEY_PROVIDED")


@pytest.fixture
def ami_without_server():
    from conftest import read_file
    from harness.ports import free_port
    ast = Asterisk(read_file("extensions.conf"), general("server=127.0.0.1:%d" % free_port(),
                                                         "prefixkey=" + PREFIX), ami=True)
    client = Ami(ast.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    yield client
    client.close()
    ast.stop()


def test_ami_answers_error_when_the_server_fails(ami_without_server, key):
    failures = {"MEMCACHED_CONNECTION_FAILURE": "fault", "MEMCACHED_SERVER_TEMPORARILY_DISABLED": "resting"}
    for action, headers in (("MemcachedSet", {"Value": "v"}), ("MemcachedGet", {}),
                            ("MemcachedDelete", {}), ("MemcachedIncrement", {"Increment": "2"})):
        reply = ami_without_server.action(action, Key=key, **headers)[0]
        assert reply["Response"] == "Error", reply
        assert reply["Result"] in failures, reply
        assert reply["Message"] == "memcached operation failed (%s)" % failures[reply["Result"]]
        assert "Value" not in reply or reply["Value"] == ""


def test_ami_status_lists_servers_and_operations(ami, memcached, key):
    ami.action("MemcachedSet", Key=key, Value="v")
    messages = ami.action("MemcachedStatus")
    assert messages[0]["Response"] == "Success"
    servers = [m for m in messages if m.get("Event") == "MemcachedServer"]
    assert [(s["Server"], s["State"], s["Version"]) for s in servers] == [
        (memcached.address, "up", stats(memcached.port)["version"])]
    operations = {m["Operation"]: m for m in messages if m.get("Event") == "MemcachedOperation"}
    assert int(operations["set"]["Calls"]) >= 1
    assert operations["set"]["Succeeded"] == operations["set"]["Calls"]
    # How each call ended, by outcome: every set here was answered.
    assert operations["set"]["Answer"] == operations["set"]["Calls"]
    assert operations["set"]["Fault"] == operations["set"]["Overload"] == "0"
    # Every option of memcached.conf, as in use.
    settings = [(m["Option"], m["Value"], m["Unit"]) for m in messages
                if m.get("Event") == "MemcachedSetting"]
    assert ("server", memcached.address, "") in settings
    assert ("prefixkey", PREFIX, "") in settings
    assert ("timeout", "300", "ms") in settings
    assert ("password", "", "") in settings
    # The pools: how many connections this Asterisk holds (text protocol: no counters' pool).
    pools = {m["Pool"]: m for m in messages if m.get("Event") == "MemcachedPool"}
    assert sorted(pools) == ["calls", "noreply writes"]
    assert pools["calls"]["Size"] == "64" and int(pools["calls"]["Peak"]) >= 1
    assert messages[-1]["Event"] == "MemcachedStatusComplete"
    assert int(messages[-1]["ListItems"]) == len(servers) + len(operations) + len(settings) + len(pools)
