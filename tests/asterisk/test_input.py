"""Bad input: a clear MCDRESULT, one log line, nothing written or mangled,
and no way to slip a memcached command in through any argument."""

import pytest

from conftest import PREFIX, general, module_log_lines

CRLF = "${URIDECODE(%0D%0A)}"


@pytest.mark.parametrize("call", [
    "mcdset(k)", "mcdset(,value)", "mcdadd(k)", "mcdreplace(k)", "mcdappend(k)",
    "mcdprepend(k)", "mcddelete()", "mcdget(GOT)", "mcdget(,k)", "Set(MCD()=x)",
])
def test_missing_arguments_give_argument_needed(pbx, call):
    assert pbx.app(call)[1] == "MEMCACHED_ARGUMENT_NEEDED"


def test_missing_function_arguments_give_argument_needed(pbx):
    assert pbx.fn("${MCD()}") == ("", "MEMCACHED_ARGUMENT_NEEDED")
    assert pbx.fn("${MCDCOUNTER()}") == ("", "MEMCACHED_ARGUMENT_NEEDED")


def test_missing_argument_is_logged_with_the_syntax(pbx):
    mark = pbx.log_mark()
    pbx.app("mcdappend(onlykey)")
    assert "Syntax: mcdappend(key,value)" in pbx.log_since(mark)


def test_key_of_250_bytes_with_prefix_is_accepted_251_refused(pbx, mc):
    fits = "k" * (250 - len(PREFIX))
    assert pbx.app("mcdset(%s,v)" % fits)[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + fits) == b"v"
    assert pbx.app("mcdset(%sk,v)" % fits)[1] == "MEMCACHED_KEY_TOO_LONG"
    assert pbx.fn("${MCD(%sk)}" % fits) == ("", "MEMCACHED_KEY_TOO_LONG")
    assert pbx.fn("${MCDCOUNTER(%sk,1)}" % fits) == ("", "MEMCACHED_KEY_TOO_LONG")


@pytest.mark.parametrize("bad_key", [
    "with space", "tab${URIDECODE(%09)}key", "cr${URIDECODE(%0D)}key", "nul-free${URIDECODE(%7F)}del",
    "x" + CRLF + "flush_all",
])
def test_keys_with_spaces_or_control_characters_are_refused(pbx, mc, key, bad_key):
    mc.set(PREFIX + key, b"sentinel")
    assert pbx.app("mcdset(%s,v)" % bad_key)[1] == "MEMCACHED_BAD_KEY_PROVIDED"
    assert pbx.fn("${MCD(%s)}" % bad_key) == ("", "MEMCACHED_BAD_KEY_PROVIDED")
    assert pbx.fn("${MCDCOUNTER(%s,1)}" % bad_key) == ("", "MEMCACHED_BAD_KEY_PROVIDED")
    assert pbx.app("mcddelete(%s)" % bad_key)[1] == "MEMCACHED_BAD_KEY_PROVIDED"
    # Nothing reached the server as a command: the sentinel survived.
    assert mc.get(PREFIX + key) == b"sentinel"


def test_refused_key_is_logged_without_its_control_characters(pbx):
    mark = pbx.log_mark()
    pbx.app("mcdset(x%sflush_all,v)" % CRLF)
    logged = pbx.log_since(mark)
    ours = module_log_lines(logged)
    assert any("key with spaces or control characters refused: MEMCACHED_BAD_KEY_PROVIDED" in line
               for line in ours)
    # Asterisk itself echoes the raw application data; this module never does.
    assert not any("flush_all" in line for line in ours)


def test_utf8_keys_are_stored_as_bytes(pbx, mc, key):
    assert pbx.app("mcdset(%s_h\u00e9_\u6771,v)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get((PREFIX + key + "_h\u00e9_\u6771").encode()) == b"v"


def test_keys_with_high_bytes_that_are_not_utf8_are_stored_as_bytes(pbx, mc, key):
    assert pbx.app("mcdset(%s_${URIDECODE(%%FF%%FE%%80)},v)" % key)[1] == "MEMCACHED_SUCCESS"
    assert mc.get((PREFIX + key + "_").encode() + b"\xff\xfe\x80") == b"v"


def test_values_with_crlf_and_commas_are_stored_verbatim(pbx, mc, key):
    mc.set(PREFIX + key + "_sentinel", b"still here")
    assert pbx.app("mcdset(%s,a,b%sflush_all%s)" % (key, CRLF, CRLF))[1] == "MEMCACHED_SUCCESS"
    assert mc.get(PREFIX + key) == b"a,b\r\nflush_all\r\n"
    assert mc.get(PREFIX + key + "_sentinel") == b"still here"


def test_value_over_max_value_length_is_refused_whole(pbx, mc, key, memcached):
    pbx.reload(general("server=" + memcached.address, "prefixkey=" + PREFIX, "max_value_length=100"))
    mark = pbx.log_mark()
    assert pbx.app("mcdset(%s,%s)" % (key, "v" * 100))[1] == "MEMCACHED_SUCCESS"
    assert pbx.app("mcdset(%s,%s)" % (key, "w" * 101))[1] == "MEMCACHED_VALUE_TOO_LONG"
    assert pbx.app("Set(MCD(%s)=%s)" % (key, "w" * 101))[1] == "MEMCACHED_VALUE_TOO_LONG"
    assert mc.get(PREFIX + key) == b"v" * 100
    assert "value of 101 bytes is over max_value_length (100); nothing written" in pbx.log_since(mark)
