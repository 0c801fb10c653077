"""Every function and application, driven through real dialplan on Local
channels, checked with MCDRESULT and with an independent memcached client.
Each test runs once per protocol (binary and text), with the same expected
MCDRESULT names in both."""

from conftest import PREFIX


def test_mcd_write_then_read_round_trips(pbx, mc, key):
    _, result = pbx.app("Set(MCD(%s)=hello world)" % key)
    assert result == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"hello world"
    assert pbx.fn("${MCD(%s)}" % key) == ("hello world", "MEMCACHED_SUCCESS")


def test_reference_example_set_append_read(pbx, key):
    pbx.app("Set(MCD(%s)=some text)" % key)
    _, result = pbx.app("mcdappend(%s,... and some more text)" % key)
    assert result == "MEMCACHED_SUCCESS"
    assert pbx.fn("${MCD(%s)}" % key) == ("some text... and some more text", "MEMCACHED_SUCCESS")


def test_missing_key_reads_empty_with_notfound(pbx, key):
    assert pbx.fn("${MCD(%s)}" % key) == ("", "MEMCACHED_NOTFOUND")


def test_empty_value_is_stored_and_is_not_a_miss(pbx, mc, key):
    _, result = pbx.app("mcdset(%s,)" % key)
    assert result == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b""
    assert pbx.fn("${MCD(%s)}" % key) == ("", "MEMCACHED_SUCCESS")


def test_mcdset_keeps_commas_and_quotes_in_the_value(pbx, mc, key):
    _, result = pbx.app('mcdset(%s,a,b "c" d,)' % key)
    assert result == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b'a,b "c" d,'


def test_value_written_by_another_client_is_read_with_prefix(pbx, mc, key):
    mc.set(PREFIX + key, b"from the web app")
    assert pbx.fn("${MCD(%s)}" % key) == ("from the web app", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCD(%s%s)}" % (PREFIX, key)) == ("", "MEMCACHED_NOTFOUND")


def test_values_of_4000_bytes_are_read_whole(pbx, mc, key):
    # Asterisk's own dialplan buffers stop near 4 KiB; up to there nothing is cut.
    mc.set(PREFIX + key, b"0123456789" * 400)
    assert pbx.length_of(key) == ("4000", "MEMCACHED_SUCCESS")


def test_mcdadd_creates_but_never_overwrites(pbx, mc, key):
    assert pbx.app("mcdadd(%s,first)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcdadd(%s,second)" % key)[1] == "MEMCACHED_DATA_EXISTS"
    assert mc.get(PREFIX + key) == b"first"


def test_mcdreplace_only_replaces_existing_keys(pbx, mc, key):
    assert pbx.app("mcdreplace(%s,new)" % key)[1] == "MEMCACHED_NOTFOUND"
    assert mc.get(PREFIX + key) is None
    mc.set(PREFIX + key, b"old")
    assert pbx.app("mcdreplace(%s,new)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"new"


def test_mcdappend_and_mcdprepend_need_an_existing_key(pbx, mc, key):
    assert pbx.app("mcdappend(%s,tail)" % key)[1] == "MEMCACHED_NOTFOUND"
    assert pbx.app("mcdprepend(%s,head)" % key)[1] == "MEMCACHED_NOTFOUND"
    assert mc.get(PREFIX + key) is None
    mc.set(PREFIX + key, b"-body-")
    assert pbx.app("mcdappend(%s,tail)" % key)[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcdprepend(%s,head)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"head-body-tail"


def test_mcddelete_removes_the_key(pbx, mc, key):
    mc.set(PREFIX + key, b"x")
    assert pbx.app("mcddelete(%s)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) is None
    assert pbx.app("mcddelete(%s)" % key)[1] == "MEMCACHED_NOTFOUND"


def test_mcdget_reads_into_a_variable_and_empties_it_on_a_miss(pbx, mc, key):
    mc.set(PREFIX + key, b"cached row")
    assert pbx.app("mcdget(GOT,%s)" % key) == ("cached row", "MEMCACHED_SUCCESS")
    out, result = pbx.app("mcdget(GOT,%s_missing)" % key)
    assert (out, result) == ("", "MEMCACHED_NOTFOUND")


def test_counter_read_adds_the_increment_and_returns_the_total(pbx, mc, key):
    assert pbx.fn("${MCDCOUNTER(%s,5)}" % key) == ("5", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s,3)}" % key) == ("8", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s,-2)}" % key) == ("6", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s)}" % key) == ("6", "MEMCACHED_SUCCESS")
    assert mc.get(PREFIX + key).strip() == b"6"


def test_counter_without_increment_does_not_create(pbx, mc, key):
    assert pbx.fn("${MCDCOUNTER(%s)}" % key) == ("", "MEMCACHED_NOTFOUND")
    assert mc.get(PREFIX + key) is None


def test_counter_write_forces_existing_value(pbx, mc, key):
    mc.set(PREFIX + key, b"not a number")
    assert pbx.app("Set(MCDCOUNTER(%s)=42)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"42"
    assert pbx.fn("${MCDCOUNTER(%s,1)}" % key) == ("43", "MEMCACHED_SUCCESS")


def test_counter_stops_at_zero(pbx, key):
    pbx.app("Set(MCDCOUNTER(%s)=3)" % key)
    assert pbx.fn("${MCDCOUNTER(%s,-10)}" % key) == ("0", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s_new,-4)}" % key) == ("0", "MEMCACHED_SUCCESS")


def test_counter_counts_a_value_another_client_wrote(pbx, mc, key):
    mc.set(PREFIX + key, b"100")
    assert pbx.fn("${MCDCOUNTER(%s,1)}" % key) == ("101", "MEMCACHED_SUCCESS")
    assert mc.incr(PREFIX + key, 10) == 111
    assert pbx.fn("${MCDCOUNTER(%s)}" % key) == ("111", "MEMCACHED_SUCCESS")


def test_counter_increment_range(pbx, key):
    assert pbx.fn("${MCDCOUNTER(%s,4294967295)}" % key) == ("4294967295", "MEMCACHED_SUCCESS")
    assert pbx.fn("${MCDCOUNTER(%s,-4294967295)}" % key) == ("0", "MEMCACHED_SUCCESS")


def test_counter_bad_increments_change_nothing(pbx, mc, key):
    mc.set(PREFIX + key, b"7")
    for bad in ("abc", "1.5", "4294967296", "-4294967296", "99999999999999999999", "5x"):
        assert pbx.fn("${MCDCOUNTER(%s,%s)}" % (key, bad)) == ("", "MEMCACHED_BAD_INCREMENT"), bad
    assert mc.get(PREFIX + key) == b"7"


def test_counter_write_refuses_what_is_not_a_count(pbx, mc, key):
    mc.set(PREFIX + key, b"7")
    for bad in ("-1", "abc", "1.5", ""):
        assert pbx.app("Set(MCDCOUNTER(%s)=%s)" % (key, bad))[1] == "MEMCACHED_ARGUMENT_NEEDED", bad
    assert mc.get(PREFIX + key) == b"7"


def test_counter_on_a_text_value_is_a_client_error(pbx, mc, key):
    mc.set(PREFIX + key, b"hello")
    # Counters talk the text protocol unless SASL is on, so the name is the same in both.
    assert pbx.fn("${MCDCOUNTER(%s,1)}" % key) == ("", "MEMCACHED_CLIENT_ERROR")
    assert mc.get(PREFIX + key) == b"hello"
    # The connection is still good for the next call.
    assert pbx.fn("${MCD(%s)}" % key) == ("hello", "MEMCACHED_SUCCESS")


# Every outcome the dialplan can meet, and its one name whatever the protocol.
RESULT_TABLE = [
    ("mcdset({k},v)", "MEMCACHED_SUCCESS"),
    ("mcdadd({k},again)", "MEMCACHED_DATA_EXISTS"),
    ("mcdreplace({k}_missing,v)", "MEMCACHED_NOTFOUND"),
    ("mcdappend({k}_missing,v)", "MEMCACHED_NOTFOUND"),
    ("mcdprepend({k}_missing,v)", "MEMCACHED_NOTFOUND"),
    ("mcddelete({k}_missing)", "MEMCACHED_NOTFOUND"),
    ("mcdget(GOT,{k}_missing)", "MEMCACHED_NOTFOUND"),
    ("mcdtouch({k}_missing,10)", "MEMCACHED_NOTFOUND"),
    ("mcdmget(A={k},B={k}_missing)", "MEMCACHED_NOTFOUND"),
    ("Set(V=${{MCD({k}_missing)}})", "MEMCACHED_NOTFOUND"),
    ("Set(V=${{MCDCOUNTER({k}_count)}})", "MEMCACHED_NOTFOUND"),
    ("Set(V=${{MCDCOUNTER({k},1)}})", "MEMCACHED_CLIENT_ERROR"),
    ("Set(V=${{MCDCOUNTER({k}_count,x)}})", "MEMCACHED_BAD_INCREMENT"),
    ("mcdset({k} x,v)", "MEMCACHED_BAD_KEY_PROVIDED"),
    ("mcdset({long},v)", "MEMCACHED_KEY_TOO_LONG"),
    ("mcdset({k})", "MEMCACHED_ARGUMENT_NEEDED"),
    ("mcddelete({k})", "MEMCACHED_SUCCESS"),
]


def test_the_same_outcome_has_the_same_name_in_both_protocols(pbx, key):
    seen = []
    for call, _ in RESULT_TABLE:
        seen.append(pbx.app(call.format(k=key, long="k" * 251))[1])
    assert seen == [expected for _, expected in RESULT_TABLE]

