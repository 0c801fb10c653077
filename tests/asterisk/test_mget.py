"""mcdmget: several keys read with one request per server, each with its own
result, checked against values another client wrote."""

import pytest

from conftest import PREFIX, cluster_conf, general
from harness.servers import HungServer, Memcached

SHOW = "${A}|${MCDRESULT_A}|${B}|${MCDRESULT_B}|${C}|${MCDRESULT_C}"


def test_every_variable_gets_its_value_and_its_own_result(pbx, mc, key):
    mc.set(PREFIX + key + "a", b"from the web app")
    mc.set(PREFIX + key + "b", b"")
    out, result = pbx.steps(["mcdmget(A=%sa,B=%sb,C=%sc)" % (key, key, key)], SHOW)
    assert out == "from the web app|MEMCACHED_SUCCESS||MEMCACHED_SUCCESS||MEMCACHED_NOTFOUND"
    assert result == "MEMCACHED_NOTFOUND"
    mc.set(PREFIX + key + "c", b"3")
    out, result = pbx.steps(["mcdmget(A=%sa, B =%sb,C=%sc)" % (key, key, key)], SHOW)
    assert out == "from the web app|MEMCACHED_SUCCESS||MEMCACHED_SUCCESS|3|MEMCACHED_SUCCESS"
    assert result == "MEMCACHED_SUCCESS"


def test_a_missing_key_empties_a_variable_that_held_a_value(pbx, key):
    out, result = pbx.steps(["Set(A=old)", "mcdmget(A=%s)" % key], "${A}|${MCDRESULT_A}")
    assert (out, result) == ("|MEMCACHED_NOTFOUND", "MEMCACHED_NOTFOUND")


def test_one_key_for_two_variables(pbx, mc, key):
    mc.set(PREFIX + key, b"twice")
    out, result = pbx.steps(["mcdmget(A=%s,B=%s)" % (key, key)], "${A}|${B}")
    assert (out, result) == ("twice|twice", "MEMCACHED_SUCCESS")


def test_a_bad_key_fails_alone(pbx, mc, key):
    mc.set(PREFIX + key, b"good")
    out, result = pbx.steps(["mcdmget(A=%s,B=bad key,C=%s)" % (key, key)], SHOW)
    assert out == "good|MEMCACHED_SUCCESS||MEMCACHED_BAD_KEY_PROVIDED|good|MEMCACHED_SUCCESS"
    assert result == "MEMCACHED_BAD_KEY_PROVIDED"


def test_64_keys_are_read_and_65_refused(pbx, mc, key):
    key = "k" + key[-9:]  # 65 pairs must stay under Asterisk's 4 KiB for application data
    for i in range(64):
        mc.set("%s%s_%d" % (PREFIX, key, i), str(i).encode())
    pairs = ",".join("V%d=%s_%d" % (i, key, i) for i in range(64))
    out, result = pbx.steps(["mcdmget(%s)" % pairs], "${V0}|${V31}|${V63}")
    assert (out, result) == ("0|31|63", "MEMCACHED_SUCCESS")
    out, result = pbx.steps(["Set(V0=old)", "mcdmget(%s,V64=%s_64)" % (pairs, key)], "${V0}")
    assert (out, result) == ("old", "MEMCACHED_ARGUMENT_NEEDED")


@pytest.mark.parametrize("arguments", ["", "A", "=k", "A=", "A=k,,B=k", "A=k,B"])
def test_malformed_pairs_read_nothing(pbx, mc, key, arguments):
    out, result = pbx.steps(["Set(A=old)", "mcdmget(%s)" % arguments], "${A}")
    assert (out, result) == ("old", "MEMCACHED_ARGUMENT_NEEDED")


def test_mcdmget_is_one_operation_not_one_per_key(pbx, mc, key):
    for i in range(5):
        mc.set("%s%s_%d" % (PREFIX, key, i), b"v")
    pbx.ast.cli("memcached reset stats")
    pairs = ",".join("V%d=%s_%d" % (i, key, i) for i in range(5))
    assert pbx.steps(["mcdmget(%s)" % pairs], "${V4}") == ("v", "MEMCACHED_SUCCESS")
    lines = {line.split()[0]: line.split() for line in pbx.ast.cli("memcached show stats").splitlines()
             if line.split()}
    assert lines["mget"][1] == "1"
    assert lines["get"][1] == "0"


def test_keys_spread_over_a_cluster_are_all_read(start_pbx, cluster):
    pbx = start_pbx(cluster_conf(cluster))
    for i in range(12):
        assert pbx.app("mcdset(m%d,%d)" % (i, i))[1] == "MEMCACHED_SUCCESS"
    pairs = ",".join("V%d=m%d" % (i, i) for i in range(12))
    out, result = pbx.steps(["mcdmget(%s)" % pairs], "|".join("${V%d}" % i for i in range(12)))
    assert (out, result) == ("|".join(str(i) for i in range(12)), "MEMCACHED_SUCCESS")


def test_keys_of_a_dead_server_fail_and_the_rest_are_read(start_pbx, cluster):
    pbx = start_pbx(cluster_conf(cluster, "server_failure_limit=1", "retry_timeout=60"))
    for i in range(12):
        assert pbx.app("mcdset(m%d,%d)" % (i, i))[1] == "MEMCACHED_SUCCESS"
    cluster[0].stop()
    pairs = ",".join("V%d=m%d" % (i, i) for i in range(12))
    shown = "|".join("${V%d}:${MCDRESULT_V%d}" % (i, i) for i in range(12))
    for attempt in range(2):  # the first meets the dead server, the second its rest-period
        out, result = pbx.steps(["mcdmget(%s)" % pairs], shown)
        read = [pair.split(":") for pair in out.split("|")]
        good = [i for i, (value, rc) in enumerate(read) if rc == "MEMCACHED_SUCCESS"]
        failed = [rc for value, rc in read if rc != "MEMCACHED_SUCCESS"]
        assert all(read[i][0] == str(i) for i in good)
        assert failed and len(good) + len(failed) == 12
        assert all(rc not in ("MEMCACHED_NOTFOUND", "") for rc in failed), failed
        assert result in failed
    assert set(failed) == {"MEMCACHED_SERVER_TEMPORARILY_DISABLED"}


def test_no_server_configured_fails_cleanly(start_pbx):
    unused = Memcached()
    unused.stop()
    pbx = start_pbx(general("server=" + unused.address, "connect_timeout=200"))
    out, result = pbx.steps(["mcdmget(A=x,B=y)"], "${A}|${MCDRESULT_A}")
    assert out.startswith("|") and result not in ("MEMCACHED_SUCCESS", "MEMCACHED_NOTFOUND")
    assert out == "|" + result


def test_three_hung_servers_cost_one_timeout_not_three(start_pbx, figures):
    hung = [HungServer() for _ in range(3)]
    try:
        pbx = start_pbx(general(*["server=" + h.address for h in hung], "timeout=500",
                                "connect_timeout=500", "server_failure_limit=5"))
        pairs = ",".join("V%d=h%d" % (i, i) for i in range(16))
        shown = "|".join("${MCDRESULT_V%d}" % i for i in range(16))
        out, result = pbx.steps(["mcdmget(%s)" % pairs], shown)
        assert result == "MEMCACHED_TIMEOUT"
        assert set(out.split("|")) == {"MEMCACHED_TIMEOUT"}
        # One timeout for all the servers (the old code asked them in turn: three, plus a probe).
        assert pbx.elapsed < 0.9, pbx.elapsed
        figures("mcdmget of 16 keys over three hung servers, timeout=500 ms: returned after %.3f s"
                % pbx.elapsed)
    finally:
        for h in hung:
            h.stop()
