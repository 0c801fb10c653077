"""What an administrator sees at the console: the installed XML documentation."""

import pytest

APPLICATIONS = ["mcdset", "mcdadd", "mcdreplace", "mcdappend", "mcdprepend", "mcddelete", "mcdget"]


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
    assert "-= Info about Application '%s' =-" % application in out
    synopsis = out.split("[Synopsis]")[1].split("[")[0].strip()
    assert synopsis and synopsis != "Not available"
    assert "res_memcached" in out
