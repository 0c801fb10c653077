"""MCDNOREPLY: writes sent without waiting for memcached's answer. What they
wrote is checked with an independent client, which may see it a moment later
(the server applies it after the call has moved on), so it is polled for."""

import pytest

from conftest import PREFIX, general
from harness.servers import Memcached

NOREPLY = "Set(MCDNOREPLY=yes)"


def eventually(pbx, mc, key, expected):
    """Wait (at most 10 s) until the independent client reads expected under key."""
    pbx.ast.wait_for(lambda: mc.get(PREFIX + key) == expected, limit=10)


def test_a_write_is_sent_and_lands(pbx, mc, key):
    assert pbx.steps([NOREPLY, "Set(MCD(%s)=fire and forget)" % key], "") == ("", "MEMCACHED_SENT")
    eventually(pbx, mc, key, b"fire and forget")


def test_every_store_application_and_delete_send(pbx, mc, key):
    steps = [NOREPLY, "mcdset(%s,mid)" % key, "mcdappend(%s,>)" % key, "mcdprepend(%s,<)" % key,
             "mcdadd(%s,ignored)" % key, "mcdreplace(%s,[<mid>])" % key]
    assert pbx.steps(steps, "") == ("", "MEMCACHED_SENT")
    eventually(pbx, mc, key, b"[<mid>]")
    assert pbx.steps([NOREPLY, "mcddelete(%s)" % key], "") == ("", "MEMCACHED_SENT")
    eventually(pbx, mc, key, None)


def test_counter_steps_create_and_count_without_a_value(pbx, mc, key):
    steps = [NOREPLY] + ["Set(V=${MCDCOUNTER(%s,3)})" % key] * 4 + ["Set(V=${V}${MCDCOUNTER(%s,-2)})" % key]
    assert pbx.steps(steps, "[${V}]") == ("[]", "MEMCACHED_SENT")
    eventually(pbx, mc, key, b"10")
    assert pbx.fn("${MCDCOUNTER(%s,1)}" % key) == ("11", "MEMCACHED_SUCCESS")


def test_a_noreply_counter_step_and_waiting_ones_add_up(pbx, mc, key):
    steps = ["Set(V=${MCDCOUNTER(%s,1)})" % key, NOREPLY, "Set(V=${MCDCOUNTER(%s,1)})" % key,
             "Set(MCDNOREPLY=)", "Set(V=${MCDCOUNTER(%s,1)})" % key]
    out, result = pbx.steps(steps, "${V}")
    assert result == "MEMCACHED_SUCCESS"
    assert out in ("2", "3")  # the server may apply the sent step after the last one
    eventually(pbx, mc, key, b"3")


def test_reads_still_wait_for_the_answer(pbx, mc, key):
    mc.set(PREFIX + key, b"read me")
    assert pbx.steps([NOREPLY, "Set(V=${MCD(%s)})" % key], "${V}") == ("read me", "MEMCACHED_SUCCESS")
    assert pbx.steps([NOREPLY, "mcdget(V,%s)" % key], "${V}") == ("read me", "MEMCACHED_SUCCESS")
    assert pbx.steps([NOREPLY, "mcdmget(V=%s)" % key], "${V}") == ("read me", "MEMCACHED_SUCCESS")


def test_bad_input_is_still_refused_at_once(pbx, key):
    assert pbx.steps([NOREPLY, "mcdset(bad key,v)"], "") == ("", "MEMCACHED_BAD_KEY_PROVIDED")
    assert pbx.steps([NOREPLY, "Set(V=${MCDCOUNTER(%s,x)})" % key], "") == ("", "MEMCACHED_BAD_INCREMENT")


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
def test_a_dead_server_is_reported_not_sent(start_pbx, protocol):
    gone = Memcached()
    gone.stop()
    pbx = start_pbx(general("server=" + gone.address, "connect_timeout=200"))
    out, result = pbx.steps([NOREPLY, "mcdset(k,v)"], "")
    assert result not in ("MEMCACHED_SENT", "MEMCACHED_SUCCESS")
    assert result.startswith("MEMCACHED_")


def test_a_counter_read_waits_for_its_answer_and_creates_nothing(pbx, mc, key):
    mc.set(PREFIX + key, b"41")
    assert pbx.steps([NOREPLY, "Set(V=${MCDCOUNTER(%s)})" % key], "${V}") == ("41", "MEMCACHED_SUCCESS")
    missing = key + "_missing"
    assert pbx.steps([NOREPLY, "Set(V=${MCDCOUNTER(%s)})" % missing], "${V}") == ("", "MEMCACHED_NOTFOUND")
    assert mc.get(PREFIX + missing) is None


def test_noreply_writes_do_not_keep_a_hung_server_from_resting(start_pbx, hung):
    pbx = start_pbx(general("server=" + hung.address, "timeout=200", "connect_timeout=200",
                            "server_failure_limit=2", "retry_timeout=60"))
    # Reads time out; a fire-and-forget write between them is sent (the kernel takes it),
    # which says nothing of the server: the second timeout rests it.
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_TIMEOUT")
    assert pbx.steps([NOREPLY, "mcdset(k,v)"], "") == ("", "MEMCACHED_SENT")
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_TIMEOUT")
    assert pbx.fn("${MCD(k)}") == ("", "MEMCACHED_SERVER_TEMPORARILY_DISABLED")
