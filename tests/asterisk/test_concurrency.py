"""Many channels on one counter at once: the total is exact and no two calls
ever saw the same step."""

import time
from concurrent.futures import ThreadPoolExecutor

from conftest import PREFIX

CALLS = 200


def test_concurrent_channels_count_exactly(pbx, mc):
    for name in ("concurrent", "concurrent_done"):
        mc.delete(PREFIX + name)
    mc.set(PREFIX + "concurrent_seen", b"")

    def originate(_):
        pbx.ast.cli("channel originate Local/bump@tests application Wait 0")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(originate, range(CALLS)))

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = mc.get(PREFIX + "concurrent_done")
        if done is not None and int(done) == CALLS:
            break
        time.sleep(0.1)
    assert int(mc.get(PREFIX + "concurrent_done")) == CALLS
    assert int(mc.get(PREFIX + "concurrent")) == CALLS
    seen = sorted(int(v) for v in mc.get(PREFIX + "concurrent_seen").split())
    assert seen == list(range(1, CALLS + 1))
