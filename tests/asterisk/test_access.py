"""Who may write: the module's functions reach memcached only from the dialplan, or from
the manager (AMI) and ARI where asterisk.conf says live_dangerously=yes; the Memcached*
manager actions keep their own classes. A manager user with the call class only (a
softphone panel, a CRM) must not rewrite a route, step a counter, join a group or take or
release a lock through Getvar and Setvar."""

import pytest

from conftest import PREFIX, Pbx, general, read_file
from harness.ami import Ami
from harness.pbx import Asterisk

LOCK_HOLD = 600


def conf(memcached):
    return general("server=" + memcached.address, "prefixkey=" + PREFIX, "lock_wait=500")


@pytest.fixture(scope="module")
def guarded(memcached):
    """An Asterisk as installed: live_dangerously left at its default (no)."""
    ast = Asterisk(read_file("extensions.conf"), conf(memcached), ami=True)
    yield ast
    ast.stop()


@pytest.fixture
def caller(guarded):
    """The manager user with the call class only."""
    client = Ami(guarded.ami_port, Asterisk.AMI_CALL_USER, Asterisk.AMI_CALL_SECRET)
    yield client
    client.close()


@pytest.fixture
def system(guarded):
    """The manager user with the system and reporting classes."""
    client = Ami(guarded.ami_port, Asterisk.AMI_USER, Asterisk.AMI_SECRET)
    yield client
    client.close()


def value_of(reply):
    assert reply["Response"] == "Success", reply
    return reply["Value"]


def channel_named(ast, prefix):
    """The one channel whose name starts with prefix (the dialplan side of a Local channel)."""
    names = [line.split("!")[0] for line in ast.cli("core show channels concise").splitlines()]
    found = [name for name in names if name.startswith(prefix) and name.endswith(";2")]
    assert len(found) == 1, names
    return found[0]


@pytest.fixture
def member_and_holder(guarded, mc, key):
    """A channel in a group of category access, and one that holds a lock (names of this test's own)."""
    group = "g" + key.rsplit("_", 1)[1]
    lock = group + "_held"
    for name, value in (("GROUP", group), ("GROUP_CATEGORY", "access"), ("GROUP_LIMIT", "0"),
                        ("LOCK_NAME", lock), ("LOCK_TTL", "600"), ("LOCK_HOLD", str(LOCK_HOLD))):
        guarded.cli("dialplan set global %s %s" % (name, value))
    guarded.cli("channel originate Local/member@tests application Wait 600")
    guarded.wait_for(lambda: guarded.eval("MCDGROUP_COUNT(%s@access)" % group) == "1")
    guarded.cli("channel originate Local/holder-access@tests application Wait 600")
    guarded.wait_for(lambda: guarded.global_var("HOLDER_access_TOOK") == "1")
    yield (channel_named(guarded, "Local/member@tests"), channel_named(guarded, "Local/holder-access@tests"),
           group, lock)
    guarded.cli("channel request hangup all")
    guarded.wait_for(lambda: guarded.eval("MCDGROUP_COUNT(%s@access)" % group) == "0"
                     and mc.get(PREFIX + "_mcd:lock:" + lock) is None)
    guarded.cli("dialplan set global HOLDER_access_TOOK 0")


def test_a_call_class_user_can_neither_rewrite_nor_read_a_value(caller, mc, key):
    mc.set(PREFIX + key, b"PJSIP/trunk")
    reply = caller.action("Setvar", Variable="MCD(%s)" % key, Value="PJSIP/evil")[0]
    assert (reply["Response"], reply["Message"]) == ("Error", "Variable not set")
    assert mc.get(PREFIX + key) == b"PJSIP/trunk"
    # A read would hand out any value (DB() is guarded the same way).
    assert value_of(caller.action("Getvar", Variable="MCD(%s)" % key)[0]) == ""


def test_a_call_class_user_can_neither_step_nor_force_a_counter(caller, mc, key):
    mc.set(PREFIX + key, b"5")
    assert value_of(caller.action("Getvar", Variable="MCDCOUNTER(%s,1000)" % key)[0]) == ""
    assert mc.get(PREFIX + key) == b"5"
    reply = caller.action("Setvar", Variable="MCDCOUNTER(%s)" % key, Value="0")[0]
    assert reply["Response"] == "Error"
    assert mc.get(PREFIX + key) == b"5"


def test_a_call_class_user_can_neither_join_a_group_nor_take_or_release_a_lock(
        guarded, caller, mc, member_and_holder):
    member, holder, group, lock = member_and_holder
    # Reading a channel's group, or counting one, changes nothing: allowed.
    assert value_of(caller.action("Getvar", Channel=member, Variable="MCDGROUP(access)")[0]) == group
    assert value_of(caller.action("Getvar", Variable="MCDGROUP_COUNT(%s@access)" % group)[0]) == "1"
    # Moving the channel to another group: refused, it stays where the dialplan put it.
    reply = caller.action("Setvar", Channel=member, Variable="MCDGROUP(access)", Value=group + "_other")[0]
    assert reply["Response"] == "Error"
    assert guarded.eval("MCDGROUP_COUNT(%s_other@access)" % group) == "0"
    assert guarded.eval("MCDGROUP_COUNT(%s@access)" % group) == "1"
    # Taking a lock for a channel, or releasing the one another channel holds: refused.
    for function in ("MCDLOCK", "MCDTRYLOCK"):
        got = caller.action("Getvar", Channel=member, Variable="%s(%s_taken)" % (function, group))[0]
        assert value_of(got) == ""
        assert mc.get(PREFIX + "_mcd:lock:%s_taken" % group) is None
    assert value_of(caller.action("Getvar", Channel=holder, Variable="MCDUNLOCK(%s)" % lock)[0]) == ""
    assert b"holder-access" in mc.get(PREFIX + "_mcd:lock:" + lock)
    locks = guarded.cli("memcached show locks")
    assert [line.split()[0] for line in locks.splitlines()[1:-1]] == [lock]


def test_the_system_user_reads_and_writes_through_the_memcached_actions(caller, system, mc, key):
    reply = system.action("MemcachedSet", Key=key, Value="from the system user")[0]
    assert (reply["Response"], reply["Result"]) == ("Success", "MEMCACHED_SUCCESS")
    assert mc.get(PREFIX + key) == b"from the system user"
    reply = system.action("MemcachedGet", Key=key)[0]
    assert (reply["Response"], reply["Value"]) == ("Success", "from the system user")
    # Getvar and Setvar of the functions are refused to every manager user, whatever its class.
    assert value_of(system.action("Getvar", Variable="MCD(%s)" % key)[0]) == ""
    assert system.action("Setvar", Variable="MCD(%s)" % key, Value="x")[0]["Response"] == "Error"
    assert mc.get(PREFIX + key) == b"from the system user"
    # The actions that write need the system class.
    reply = caller.action("MemcachedSet", Key=key, Value="evil")[0]
    assert (reply["Response"], reply["Message"]) == ("Error", "Permission denied")
    assert mc.get(PREFIX + key) == b"from the system user"


def test_the_dialplan_is_not_affected(guarded, mc, key):
    pbx = Pbx(guarded)
    assert pbx.fn("${MCDCOUNTER(%s_n,3)}" % key) == ("3", "MEMCACHED_SUCCESS")
    assert pbx.steps(["Set(MCD(%s)=written)" % key], "${MCD(%s)}" % key) == ("written", "MEMCACHED_SUCCESS")
    assert (mc.get(PREFIX + key + "_n"), mc.get(PREFIX + key)) == (b"3", b"written")


def test_live_dangerously_hands_the_functions_to_the_manager(memcached, mc, key):
    ast = Asterisk(read_file("extensions.conf"), conf(memcached), ami=True, live_dangerously=True)
    try:
        caller = Ami(ast.ami_port, Asterisk.AMI_CALL_USER, Asterisk.AMI_CALL_SECRET)
        try:
            assert caller.action("Setvar", Variable="MCD(%s)" % key, Value="v")[0]["Response"] == "Success"
            assert mc.get(PREFIX + key) == b"v"
            assert value_of(caller.action("Getvar", Variable="MCDCOUNTER(%s_n,1000)" % key)[0]) == "1000"
        finally:
            caller.close()
    finally:
        ast.stop()
