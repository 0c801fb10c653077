# res_memcached: build, install, test, demo, bench.
#
# Where Asterisk and its headers are installed (a real PBX, or the sandbox):
#   make && make install      build res_memcached.so and install it, its docs and a sample config
#   make asterisk-tests       the tests in a private Asterisk (TESTS= narrows them)
#   make check                every suite: unit, fuzz, the tests in a private Asterisk, and the
#                             package and Asterisk 16 suites, which need the roots that make test
#                             lends them (run alone, those two report a failure)
#   make run-demo             run the demo dialplan in a private Asterisk
# On a plain Debian machine, everything runs inside the Debian sid sandbox:
#   make demo                 build the sandbox once, then build, install and run the demo in it
#   make test                 build the sandboxes once, then build, install and run every test
#                             (the package test installs the .deb into a second, clean root;
#                             the integration tests run again in a bullseye root, Asterisk 16)
#   make load                 a long load run with reloads (LOAD_CHANNELS, LOAD_ITERATIONS)
#   make fuzz-long            each fuzz target for FUZZ_SECONDS (default 60)
#   make chaos                the cluster simulation at scale: 50 nodes, 10,000 groups, CHAOS_ROUNDS
#                             rounds of failures (SIM="--seed N" replays one)
#   make bench                the benchmark tables and charts (bench/bench.py, bench/charts.py;
#                             see bench/README.md)
#   make profile              instructions per operation under callgrind (bench/profile.py)
# The Python harness (harness/) is imported from the repository's root: python3 -m ...

ASTERISK_INCLUDE_DIR ?= /usr/include
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
MODULES_DIR ?= $(firstword $(wildcard /usr/lib/$(MULTIARCH)/asterisk/modules) /usr/lib/asterisk/modules)
ASTERISK_ETC_DIR ?= /etc/asterisk
# Debian keeps Asterisk's data in /usr/share/asterisk; a source install in /var/lib/asterisk.
ASTERISK_DATA_DIR ?= $(if $(wildcard /usr/share/asterisk/documentation),/usr/share/asterisk,/var/lib/asterisk)
DOC_DIR ?= $(ASTERISK_DATA_DIR)/documentation/thirdparty
DESTDIR ?=

CC ?= cc
WARNINGS := -Wall -Wextra -Werror
CFLAGS ?= -O2 -g
MEMCACHED_CFLAGS := $(shell pkg-config --cflags libmemcached 2>/dev/null)
MEMCACHED_LIBS := $(shell pkg-config --libs libmemcached 2>/dev/null || echo -lmemcached -lmemcachedutil)
# Hidden by default: the module's own functions bind to themselves, never to a
# like-named symbol of another module loaded into the same Asterisk.
MODULE_CFLAGS := -fPIC -fvisibility=hidden -D_GNU_SOURCE -DAST_MODULE=\"res_memcached\" \
	-DAST_MODULE_SELF_SYM=__internal_res_memcached_self -isystem $(ASTERISK_INCLUDE_DIR) -Isrc

# The Asterisk-free core (tested and fuzzed on its own), and the glue over it.
CORE_SOURCES := $(wildcard src/core/*.c)
GLUE_SOURCES := src/res_memcached.c $(wildcard src/glue/*.c)
HEADERS := $(wildcard src/core/*.h src/glue/*.h)

# res_memcached_prometheus, a module of its own, where Asterisk has res_prometheus (17+).
PROMETHEUS_MODULE := $(if $(wildcard $(ASTERISK_INCLUDE_DIR)/asterisk/res_prometheus.h),res_memcached_prometheus.so)
PROMETHEUS_CFLAGS := -fPIC -D_GNU_SOURCE -DAST_MODULE=\"res_memcached_prometheus\" \
	-DAST_MODULE_SELF_SYM=__internal_res_memcached_prometheus_self -isystem $(ASTERISK_INCLUDE_DIR) -Isrc

.PHONY: all install uninstall clean check unit-tests asterisk-tests fuzz load-here run-demo demo test \
	load fuzz-long bench bench-here profile profile-here sandbox chaos chaos-here coord-bench-here

all: res_memcached.so $(PROMETHEUS_MODULE)

res_memcached.so: $(GLUE_SOURCES) $(CORE_SOURCES) $(HEADERS)
	@pkg-config --atleast-version=1.1.4 libmemcached || { \
		echo "libmemcached 1.1.4 or newer is needed (older ones can mix up values under load)"; exit 1; }
	@test -f $(ASTERISK_INCLUDE_DIR)/asterisk.h || { \
		echo "Asterisk headers not found in $(ASTERISK_INCLUDE_DIR): install asterisk-dev or set ASTERISK_INCLUDE_DIR"; exit 1; }
	$(CC) $(CFLAGS) $(WARNINGS) $(MODULE_CFLAGS) $(MEMCACHED_CFLAGS) -shared -o $@ \
		$(GLUE_SOURCES) $(CORE_SOURCES) $(MEMCACHED_LIBS) $(LDFLAGS)

# Its one undefined symbol, res_memcached_metrics, is res_memcached's, found when it loads.
res_memcached_prometheus.so: src/res_memcached_prometheus.c src/glue/metrics.h
	$(CC) $(CFLAGS) $(WARNINGS) $(PROMETHEUS_CFLAGS) -shared -o $@ $< $(LDFLAGS)

install: res_memcached.so $(PROMETHEUS_MODULE)
	install -d $(DESTDIR)$(MODULES_DIR) $(DESTDIR)$(DOC_DIR) $(DESTDIR)$(ASTERISK_ETC_DIR)
	install -m 0644 res_memcached.so $(PROMETHEUS_MODULE) $(DESTDIR)$(MODULES_DIR)/
	install -m 0644 doc/res_memcached-en_US.xml $(DESTDIR)$(DOC_DIR)/res_memcached-en_US.xml
	@# Never overwrite an administrator's configuration.
	test -e $(DESTDIR)$(ASTERISK_ETC_DIR)/memcached.conf || \
		install -m 0640 memcached.conf.sample $(DESTDIR)$(ASTERISK_ETC_DIR)/memcached.conf

uninstall:
	rm -f $(DESTDIR)$(MODULES_DIR)/res_memcached.so $(DESTDIR)$(MODULES_DIR)/res_memcached_prometheus.so \
		$(DESTDIR)$(DOC_DIR)/res_memcached-en_US.xml

# --- tests, run where Asterisk, memcached and python3 are (the sandbox) ---

# cmocka's test signature takes a state most tests do not use.
UNIT_CFLAGS := $(CFLAGS) $(WARNINGS) -D_GNU_SOURCE -Wno-unused-parameter -fsanitize=address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer -Isrc/core $(MEMCACHED_CFLAGS)
UNIT_PROGRAMS := tests/unit/run_unit tests/unit/run_coord tests/unit/cluster_sim

tests/unit/run_unit: tests/unit/test_mcd.c $(CORE_SOURCES) $(HEADERS)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(CORE_SOURCES) $(MEMCACHED_LIBS) -lcmocka -pthread

tests/unit/run_coord: tests/unit/test_coord.c $(CORE_SOURCES) $(HEADERS)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(CORE_SOURCES) $(MEMCACHED_LIBS) -lcmocka -pthread

tests/unit/cluster_sim: tests/unit/cluster_sim.c $(CORE_SOURCES) $(HEADERS)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(CORE_SOURCES) $(MEMCACHED_LIBS) -pthread

# At scale, without the sanitizers: one process does the work of 50 Asterisks.
tests/unit/cluster_sim_fast: tests/unit/cluster_sim.c $(CORE_SOURCES) $(HEADERS)
	$(CC) -O2 -g $(WARNINGS) -D_GNU_SOURCE -Isrc/core $(MEMCACHED_CFLAGS) -o $@ $< $(CORE_SOURCES) $(MEMCACHED_LIBS) -pthread

# The cluster simulation starts (and restarts) a memcached of its own on a free port. A short
# run here; SIM= passes it options (--seed N replays a run exactly, --help lists them).
SIM ?=
unit-tests: $(UNIT_PROGRAMS)
	harness/with-memcached.sh tests/unit/run_unit
	harness/with-memcached.sh tests/unit/run_coord
	tests/unit/cluster_sim --port $$(python3 -m harness.ports) $(SIM)

# The simulation at scale: 50 Asterisk nodes, 10,000 groups, a lease of 5 s, CHAOS_ROUNDS rounds.
# One process does the work of 50 Asterisks: failures come at most every 2 s, so that it keeps
# up with the leases (a node whose tick comes late is retired, as a stalled Asterisk would be).
CHAOS_ROUNDS ?= 10
chaos-here: tests/unit/cluster_sim_fast
	tests/unit/cluster_sim_fast --port $$(python3 -m harness.ports) --nodes 50 --groups 10000 --lease 5 \
		--chaos-ms 8000 --quiet-ms 6000 --failure-ms 2000 --rounds $(CHAOS_ROUNDS) $(SIM)

# TESTS narrows the run, as pytest's own arguments: TESTS="tests/asterisk/test_metrics.py -k escape".
TESTS ?= tests/asterisk
asterisk-tests: install
	python3 -m pytest -q -p no:cacheprovider $(TESTS)

# The parsers under libFuzzer (clang), seeded from tests/fuzz/corpus; new finds go to
# a scratch copy unless FUZZ_CORPUS_OUT names a folder to keep them in.
FUZZERS := tests/fuzz/fuzz_config tests/fuzz/fuzz_parsers
FUZZ_SECONDS ?= 60

tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c src/core/options.c src/core/util.c $(HEADERS)
	clang -g -O1 $(WARNINGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc/core \
		-o $@ $< src/core/options.c src/core/util.c

fuzz: $(FUZZERS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZERS)

# A long load run in a private Asterisk: LOAD_CHANNELS x LOAD_ITERATIONS with reloads.
LOAD_CHANNELS ?= 400
LOAD_ITERATIONS ?= 100
load-here: install
	LOAD_CHANNELS=$(LOAD_CHANNELS) LOAD_ITERATIONS=$(LOAD_ITERATIONS) LOAD_OUTSIDE=5000 \
		python3 -m pytest -q -s -p no:cacheprovider tests/asterisk/test_load.py

# The benchmark: a table of figures, never a pass or fail.
bench/raw: bench/raw.c
	$(CC) -O2 $(WARNINGS) -pthread $(MEMCACHED_CFLAGS) -o $@ $< $(MEMCACHED_LIBS)

bench/coord_bench: bench/coord_bench.c $(CORE_SOURCES) $(HEADERS)
	$(CC) -O2 $(WARNINGS) -D_GNU_SOURCE -Isrc/core $(MEMCACHED_CFLAGS) -o $@ $< $(CORE_SOURCES) $(MEMCACHED_LIBS) -pthread

bench-here: install bench/raw bench/coord_bench
	python3 -m bench.bench
	python3 -m bench.charts
	harness/with-memcached.sh bench/coord_bench

# Only the cost of groups (bench/coord_bench.c): GROUPS groups, NODES nodes listed.
GROUPS ?= 10000
NODES ?= 100
coord-bench-here: bench/coord_bench
	harness/with-memcached.sh bench/coord_bench $(GROUPS) $(NODES)

# Instructions per operation under callgrind: where the module's time goes.
profile-here: install
	python3 -m bench.profile

# Every suite (unit, Asterisk, a short fuzz), then one line that sums them up.
check: $(UNIT_PROGRAMS) $(FUZZERS) install
	tests/run-all.sh

run-demo: install
	python3 -m sandbox.demo

# --- the same, from a plain Debian machine, inside the Debian sid sandbox ---

sandbox:
	sandbox/root.sh

demo:
	sandbox/run.sh run-demo

test:
	MCD_LEND_CLEAN_ROOT=$$(sandbox/root.sh clean) MCD_LEND_ASTERISK16_ROOT=$$(sandbox/root.sh asterisk16) \
		sandbox/run.sh check

load:
	sandbox/run.sh load-here LOAD_CHANNELS=$(LOAD_CHANNELS) LOAD_ITERATIONS=$(LOAD_ITERATIONS)

bench:
	MCD_KEEP="bench/results.json bench/charts" sandbox/run.sh bench-here

profile:
	sandbox/run.sh profile-here

fuzz-long:
	sandbox/run.sh fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

chaos:
	sandbox/run.sh chaos-here CHAOS_ROUNDS=$(CHAOS_ROUNDS) SIM="$(SIM)"

clean:
	rm -f res_memcached.so res_memcached_prometheus.so $(UNIT_PROGRAMS) tests/unit/cluster_sim_fast $(FUZZERS) bench/raw bench/coord_bench
