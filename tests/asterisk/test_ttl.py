"""Expiry: the configured ttl, MCDTTL per channel, counters that never
expire by default, and ttls above memcached's 30-day cut-over."""

import time

from conftest import PREFIX, general, meta_ttl


def ttl_of(memcached, key):
    return meta_ttl(memcached.port, PREFIX + key)


def test_values_never_expire_by_default(pbx, memcached, key):
    pbx.app("mcdset(%s,v)" % key)
    assert ttl_of(memcached, key) == -1


def test_mcdttl_sets_the_expiry_of_a_write(pbx, memcached, key):
    assert pbx.app("mcdset(%s,v)" % key, ttl=100)[1] == "MEMCACHED_SUCCESS"
    assert 90 <= ttl_of(memcached, key) <= 100
    pbx.app("Set(MCD(%s_f)=v)" % key, ttl=200)
    assert 190 <= ttl_of(memcached, key + "_f") <= 200


def test_configured_ttl_applies_to_values_not_counters(pbx, memcached, key):
    pbx.reload(general("server=" + memcached.address, "prefixkey=" + PREFIX, "ttl=300"))
    pbx.app("mcdset(%s,v)" % key)
    assert 290 <= ttl_of(memcached, key) <= 300
    pbx.fn("${MCDCOUNTER(%s_c,1)}" % key)
    assert ttl_of(memcached, key + "_c") == -1
    pbx.app("mcdset(%s_o,v)" % key, ttl=50)
    assert 40 <= ttl_of(memcached, key + "_o") <= 50


def test_mcdttl_applies_to_counters_when_set(pbx, memcached, key):
    pbx.fn("${MCDCOUNTER(%s,1)}" % key, ttl=60)
    assert 50 <= ttl_of(memcached, key) <= 60
    pbx.app("Set(MCDCOUNTER(%s_w)=5)" % key, ttl=70)
    assert 60 <= ttl_of(memcached, key + "_w") <= 70


def test_ttl_above_30_days_stays_relative(pbx, memcached, key):
    forty_days = 40 * 24 * 3600
    assert pbx.app("mcdset(%s,v)" % key, ttl=forty_days)[1] == "MEMCACHED_SUCCESS"
    # Sent as a date, which memcached reads on its own clock: it ticks once a second and may
    # lag the wall clock by up to 2 s, so the remainder can come out 2 s longer.
    assert forty_days - 10 <= ttl_of(memcached, key) <= forty_days + 2


def test_bad_mcdttl_is_logged_and_the_configured_ttl_used(pbx, memcached, key):
    pbx.reload(general("server=" + memcached.address, "prefixkey=" + PREFIX, "ttl=300"))
    for bad in ("abc", "-5", "1.5", "400000000"):
        mark = pbx.log_mark()
        assert pbx.app("mcdset(%s,v)" % key, ttl=bad)[1] == "MEMCACHED_SUCCESS"
        assert 290 <= ttl_of(memcached, key) <= 300, bad
        assert "MCDTTL '%s' is not a whole number of seconds" % bad in pbx.log_since(mark)


def test_value_is_gone_after_its_ttl(pbx, mc, key):
    # memcached's clock ticks in whole seconds: a ttl of 2 keeps the value for at
    # least one full second, enough to see it, and it is surely gone 3.2 s later.
    pbx.app("mcdset(%s,short-lived)" % key, ttl=2)
    assert mc.get(PREFIX + key) == b"short-lived"
    time.sleep(3.2)
    assert mc.get(PREFIX + key) is None
    assert pbx.fn("${MCD(%s)}" % key) == ("", "MEMCACHED_NOTFOUND")
