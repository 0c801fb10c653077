"""What an administrator sees at the console: the installed XML documentation."""

import pytest

APPLICATIONS = ["mcdset", "mcdadd", "mcdreplace", "mcdappend", "mcdprepend", "mcddelete", "mcdget",
                "mcdmget", "mcdtouch"]
ACTIONS = ["MemcachedGet", "MemcachedSet", "MemcachedDelete", "MemcachedIncrement", "MemcachedStatus"]


@pytest.mark.parametrize("protocol", ["binary"], indirect=True)
@pytest.mark.parametrize("function, words", [
    ("MCD", "Read or write a value in memcached."),
    ("MCDCOUNTER", "Read, step or force an integer counter in memcached, atomically."),
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
                    "memcached flush"):
        assert command in out, command
