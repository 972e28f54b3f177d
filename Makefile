# llmgw - build, run and test.
#
#   make            build bin/llmgwd and the test tools
#   make run        install missing packages, build, start the gateway
#   make test       install missing packages, build, run every test
#   make SANITIZER=address,undefined test-integration
#   make bench      benchmarks (writes docs/BENCHMARKS.md)

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZER ?=

PKGS      := libcurl jansson hiredis openssl inih libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

# OPT and WERROR may be set on the command line (CI: WERROR=-Werror);
# CFLAGS/LDFLAGS from the command line are appended, never replace ours.
OPT    ?= -O2 -g
WERROR ?=
WARN   := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE -pthread $(OPT) $(WARN) $(WERROR) -iquote include \
	      $(PKG_CFLAGS) $(SAN_FLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LDLIBS += $(PKG_LIBS) -pthread -lm

ifneq ($(SANITIZER),)
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BUILD   := build/san
BIN     := bin/san
else
BUILD   := build/release
BIN     := bin
endif

# Listed, not globbed: a file joins the build when it is wired in.
SRCS     := $(addprefix src/,main.c log.c buf.c names.c config.c request.c job.c queue.c jscan.c beat.c \
	      limiter.c scheduler.c worker.c provider.c provider_openai.c \
	      provider_anthropic.c sse.c answer.c ledger.c stats.c cache.c async.c pipeline.c \
	      http1.c http_front.c dashboard.c)
OBJS     := $(SRCS:src/%.c=$(BUILD)/%.o) $(BUILD)/assets.o
LIB_OBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
UNIT_SRCS := $(addprefix tests/unit/,check_main.c check_queue.c check_limiter.c \
	      check_request.c check_config.c check_anthropic.c check_sse.c \
	      check_ledger.c check_cache.c check_answer.c check_jscan.c check_beat.c mutate.c)

# The dashboard page and Chart.js are compiled in (scripts/embed.sh). The
# chart library comes from Debian's libjs-chart.js; CHARTJS=/path/chart.js
# picks another copy. Neither file is ever kept in the repository.
CHARTJS ?= auto
CHARTJS_DEP := $(if $(filter auto,$(CHARTJS)),$(wildcard \
	/usr/share/javascript/chart.js/chart.umd.js /usr/share/javascript/chart.js/chart.min.js),$(CHARTJS))

.PHONY: all deps run test test-unit test-integration bench clean install valgrind

all: $(BIN)/llmgwd $(BIN)/fake_provider

$(BUILD)/%.o: src/%.c $(wildcard include/*.h) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/assets.c: scripts/embed.sh src/dashboard.html $(CHARTJS_DEP) | $(BUILD)
	bash scripts/embed.sh $@ dashboard_html=src/dashboard.html chartjs=$(CHARTJS)

$(BUILD)/assets.o: $(BUILD)/assets.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $@

$(BIN):
	mkdir -p $@

$(BIN)/llmgwd: $(OBJS) | $(BIN)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/fake_provider: tests/fake_provider.c | $(BIN)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -ljansson -lm

$(BIN)/unit_tests: $(UNIT_SRCS) $(LIB_OBJS) | $(BIN)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(UNIT_SRCS) $(LIB_OBJS) $(LDLIBS) $(CHECK_LIBS)

deps:
	bash scripts/deps.sh

# run, test and bench install packages first, then build in a sub-make so
# pkg-config sees what was just installed.
run:
	LLMGW_DEPS_MINIMAL=1 bash scripts/deps.sh
	$(MAKE) all
	bash scripts/run.sh

test:
	bash scripts/deps.sh
	$(MAKE) all $(BIN)/unit_tests
	LLMGW_BINDIR=$(BIN) bash scripts/test.sh

test-unit: all $(BIN)/unit_tests
	LLMGW_BINDIR=$(BIN) bash scripts/test.sh unit

test-integration: all
	LLMGW_BINDIR=$(BIN) bash scripts/test.sh integration

bench:
	bash scripts/deps.sh
	$(MAKE) all $(BIN)/loadgen $(BIN)/rss_floor $(BIN)/stack_floor
	bash scripts/bench.sh

# Benchmark tools: a C load generator, and the idle RSS of llmgwd's
# libraries alone (linked exactly like llmgwd).
$(BIN)/loadgen: scripts/bench/loadgen.c | $(BIN)
	$(CC) -std=c11 -O2 $(WARN) $(WERROR) -o $@ $< -lm

# rss_floor calls into few of them: --no-as-needed keeps every library
# llmgwd loads (the toolchain's default --as-needed would drop libsystemd,
# jansson, hiredis, inih and libm and understate the floor).
$(BIN)/rss_floor: scripts/bench/rss_floor.c | $(BIN)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -Wl,--no-as-needed $(LDLIBS)

# The stack floor also measures libmicrohttpd, which llmgwd no longer uses.
$(BIN)/stack_floor: scripts/bench/stack_floor.c | $(BIN)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags libmicrohttpd) $(ALL_LDFLAGS) -o $@ $< \
		$(shell pkg-config --libs libmicrohttpd) $(LDLIBS)

valgrind: all $(BIN)/unit_tests
	CK_FORK=no valgrind --error-exitcode=1 --leak-check=full $(BIN)/unit_tests

install: all
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" bash scripts/install.sh

clean:
	rm -rf build bin
