"""What an administrator sees at the console: the installed XML documentation."""

import pytest

APPLICATIONS = ["mcdset", "mcdadd", "mcdreplace", "mcdappend", "mcdprepend", "mcddelete", "mcdget",
                "mcdmget", "mcdtouch"]
ACTIONS = ["MemcachedGet", "MemcachedSet", "MemcachedDelete", "MemcachedIncrement", "MemcachedStatus",
           "MemcachedGroups", "MemcachedGroupReset", "MemcachedLocks"]


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
@pytest.mark.parametrize("function, words", [
    ("MCD", "Read or write a value in memcached."),
    ("MCDCOUNTER", "Read, step or force an integer counter in memcached, atomically."),
    ("MCDGROUP", "Put the channel in a call group counted across all Asterisk servers."),
    ("MCDGROUP_COUNT", "Count the channels in a call group across every Asterisk sharing memcached."),
    ("MCDLOCK", "Take a lock shared by all Asterisk servers, waiting a bounded time."),
    ("MCDTRYLOCK", "Take a named lock shared by every Asterisk using memcached, without waiting."),
    ("MCDUNLOCK", "Release a lock taken with MCDLOCK or MCDTRYLOCK."),
])
def test_core_show_function_prints_the_documentation(pbx, function, words):
    out = pbx.ast.cli("core show function " + function)
    assert words in out
    assert "[Syntax]" in out
    assert "MCDRESULT" in out


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
@pytest.mark.parametrize("application", APPLICATIONS)
def test_core_show_application_prints_the_documentation(pbx, application):
    out = pbx.ast.cli("core show application " + application)
    # Asterisk 16 writes "application", 22 "Application".
    assert "-= info about application '%s' =-" % application in out.lower()
    synopsis = out.split("[Synopsis]")[1].split("[")[0].strip()
    assert synopsis and synopsis != "Not available"
    # Asterisk 16 does not name the module that provides an application; 22 does.
    if not pbx.ast.cli("core show version").split()[1].startswith("16."):
        assert out.split("[Provided By]")[1].split()[0] == "res_memcached"


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
@pytest.mark.parametrize("action", ACTIONS)
def test_manager_show_command_prints_the_documentation(pbx, action):
    out = pbx.ast.cli("manager show command " + action)
    synopsis = out.split("[Synopsis]")[1].split("[")[0].strip()
    assert synopsis and synopsis != "Not available"


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
def test_cli_help_lists_every_memcached_command(pbx):
    out = pbx.ast.cli("core show help memcached")
    for command in ("memcached show settings", "memcached show servers", "memcached show stats",
                    "memcached reset stats", "memcached {get|set|add|delete|incr}",
                    "memcached flush", "memcached show groups", "memcached reset group",
                    "memcached show locks"):
        assert command in out, command
