"""Clusters of real memcached servers: spreading, losing a server, replicas,
and two Asterisk servers sharing one cluster."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymemcache.client.base import Client

from conftest import PREFIX, cluster_conf, memcached_keys

KEYS = 30


@pytest.mark.parametrize("distribution", ["modula", "consistent"])
def test_cluster_spreads_keys_over_every_server(start_pbx, cluster, distribution):
    pbx = start_pbx(cluster_conf(cluster, "distribution=" + distribution))
    for i in range(KEYS):
        assert pbx.app("mcdset(spread%d,%d)" % (i, i))[1] == "MEMCACHED_SUCCESS"
    # The test's own keys (the groups' tick may write its registry beside them).
    held = [sum(1 for k in memcached_keys(s.port) if k.startswith(PREFIX + "spread")) for s in cluster]
    assert sum(held) == KEYS
    assert all(n > 0 for n in held), held
    for i in range(KEYS):
        assert pbx.fn("${MCD(spread%d)}" % i) == (str(i), "MEMCACHED_SUCCESS")


def which_server(cluster, key):
    for n, server in enumerate(cluster):
        if Client(("127.0.0.1", server.port)).get(PREFIX + key) is not None:
            return n
    return None


def test_lost_server_fails_only_its_own_keys(start_pbx, cluster, figures):
    pbx = start_pbx(cluster_conf(cluster, "server_failure_limit=1", "retry_timeout=60"))
    for i in range(KEYS):
        pbx.app("mcdset(k%d,%d)" % (i, i))
    home = {i: which_server(cluster, "k%d" % i) for i in range(KEYS)}
    cluster[0].stop()
    results = {i: pbx.fn("${MCD(k%d)}" % i) for i in range(KEYS)}
    for i, (value, result) in results.items():
        if home[i] == 0:
            assert value == "" and result in ("MEMCACHED_CONNECTION_FAILURE",
                                              "MEMCACHED_SERVER_TEMPORARILY_DISABLED"), (i, result)
        else:
            assert (value, result) == (str(i), "MEMCACHED_SUCCESS"), i
    lost = sum(1 for i in home if home[i] == 0)
    assert 0 < lost < KEYS
    figures("3-server cluster, one killed, remove_failed_servers=no: %d of %d keys failed "
            "cleanly, the other %d read back" % (lost, KEYS, KEYS - lost))


def test_remove_failed_servers_moves_keys_to_the_living(start_pbx, cluster, figures):
    pbx = start_pbx(cluster_conf(cluster, "remove_failed_servers=yes", "server_failure_limit=1",
                                 "retry_timeout=60", "distribution=consistent"))
    cluster[0].stop()
    first = [pbx.app("mcdset(m%d,%d)" % (i, i))[1] for i in range(KEYS)]
    # The writes that first meet the dead server fail while libmemcached marks it and
    # rebuilds its ring; after that its keys go to the living servers.
    failed = [r for r in first if r != "MEMCACHED_SUCCESS"]
    assert set(failed) <= {"MEMCACHED_CONNECTION_FAILURE", "MEMCACHED_SERVER_MARKED_DEAD"}, first
    assert len(failed) <= 3, first
    for i in range(KEYS):
        assert pbx.app("mcdset(m%d,%d)" % (i, i))[1] == "MEMCACHED_SUCCESS"
        assert pbx.fn("${MCD(m%d)}" % i) == (str(i), "MEMCACHED_SUCCESS")
    assert sum(1 for s in cluster[1:] for k in memcached_keys(s.port)
               if k.startswith(PREFIX + "m") and not k.startswith(PREFIX + "_mcd:")) == KEYS
    figures("3-server cluster, one killed, remove_failed_servers=yes: %d write(s) failed "
            "before the keys moved; then %d of %d writes and reads succeeded"
            % (len(failed), KEYS, KEYS))


def test_replicas_keep_values_readable_after_a_loss(start_pbx, cluster):
    pbx = start_pbx(cluster_conf(cluster, "replicas=1", "server_failure_limit=1",
                                 "retry_timeout=60", "distribution=consistent"))
    for i in range(KEYS):
        assert pbx.app("mcdset(r%d,%d)" % (i, i))[1] == "MEMCACHED_SUCCESS"
    cluster[0].stop()
    # The read that first meets the dead server fails; from then on, replicas answer.
    first = [pbx.fn("${MCD(r%d)}" % i) for i in range(KEYS)]
    failed = [r for i, r in enumerate(first) if r != (str(i), "MEMCACHED_SUCCESS")]
    assert failed in ([], [("", "MEMCACHED_CONNECTION_FAILURE")]), failed
    for i in range(KEYS):
        assert pbx.fn("${MCD(r%d)}" % i) == (str(i), "MEMCACHED_SUCCESS"), i


def test_replicas_need_the_binary_protocol(start_pbx, cluster):
    pbx = start_pbx(cluster_conf(cluster, "replicas=1", "binary_proto=no"))
    assert "memcached.conf: replicas need binary_proto=yes" in pbx.ast.log()


def test_two_asterisks_share_keys_and_count_exactly(start_pbx, cluster, figures):
    conf = cluster_conf(cluster)
    east, west = start_pbx(conf), start_pbx(conf)
    assert east.app("mcdset(shared,from east)")[1] == "MEMCACHED_SUCCESS"
    assert west.fn("${MCD(shared)}") == ("from east", "MEMCACHED_SUCCESS")
    assert west.fn("${MCDCOUNTER(shared_calls,2)}") == ("2", "MEMCACHED_SUCCESS")
    assert east.fn("${MCDCOUNTER(shared_calls,3)}") == ("5", "MEMCACHED_SUCCESS")

    east.app("mcdset(concurrent_seen,)")
    east.app("Set(MCDCOUNTER(concurrent)=0)")
    east.app("Set(MCDCOUNTER(concurrent_done)=0)")
    home = cluster[which_server(cluster, "concurrent")]
    per_side, outside = 100, 100
    started = time.monotonic()

    def originate(pbx):
        pbx.ast.cli("channel originate Local/bump@tests application Wait 0")

    def outside_client():
        # Another application bumping the same counter on its server, meanwhile.
        client = Client(("127.0.0.1", home.port))
        for _ in range(outside):
            client.incr(PREFIX + "concurrent", 1)

    with ThreadPoolExecutor(max_workers=9) as pool:
        bumping = pool.submit(outside_client)
        list(pool.map(originate, [east, west] * per_side))
        bumping.result()
    deadline = time.monotonic() + 120
    done = ""
    while time.monotonic() < deadline:
        done = east.fn("${MCDCOUNTER(concurrent_done)}")[0]
        if done == str(2 * per_side):
            break
        time.sleep(0.2)
    assert done == str(2 * per_side)
    total = 2 * per_side + outside
    assert east.fn("${MCDCOUNTER(concurrent)}") == (str(total), "MEMCACHED_SUCCESS")
    seen = [int(v) for v in west.fn("${MCD(concurrent_seen)}")[0].split()]
    assert len(seen) == 2 * per_side and len(set(seen)) == len(seen)
    assert all(1 <= v <= total for v in seen)
    figures("two Asterisks on one 3-server cluster: %d channels and %d outside increments "
            "on one counter in %.1f s; total exact (%d), no step seen twice"
            % (2 * per_side, outside, time.monotonic() - started, total))
