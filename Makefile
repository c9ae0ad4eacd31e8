# mod_chatbot - top-level build.
#
#   make            build the core library, the module (apxs) and the UI assets
#   make run        install what is missing, build, start httpd on :8000/:8443
#   make test       every test: boundary, prototypes, code map, format, unit, unit under ASan+UBSan, fuzz
#                   corpus replay, integration (pytest + real httpd), e2e
#   make bench      benchmarks (see docs/performance.md)
#   make fuzz       run the libFuzzer targets for longer (FUZZ_SECONDS each)
#   make install    install the module and conf/ files into the system httpd
#
# The portable core (mod_chatbot/core) is built as its own static library;
# unit tests and fuzzers link only that library.

CC        ?= cc
CLANG     ?= clang
APXS      ?= $(shell command -v apxs 2>/dev/null || echo /usr/bin/apxs)
PYTHON    ?= /usr/bin/python3
BUILD     ?= build
JSONC_CFLAGS := $(shell pkg-config --cflags json-c 2>/dev/null)
JSONC_LIBS   := $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)

WARN      = -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes
CORE_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -fPIC \
              $(WARN) -Iinclude $(JSONC_CFLAGS)
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CORE_LIBS = $(JSONC_LIBS) -lwslay

CORE_SRC  := $(sort $(wildcard mod_chatbot/core/*.c))
CORE_HDR  := $(wildcard include/chat/*.h) $(wildcard mod_chatbot/core/*.h)
CORE_OBJ  := $(CORE_SRC:mod_chatbot/core/%.c=$(BUILD)/core/%.o)
CORE_LIB  := $(BUILD)/libchatcore.a
ASAN_OBJ  := $(CORE_SRC:mod_chatbot/core/%.c=$(BUILD)/asan/core/%.o)
ASAN_LIB  := $(BUILD)/asan/libchatcore.a
# the core as seen by libFuzzer: coverage-instrumented (fuzzer-no-link)
FZ_OBJ    := $(CORE_SRC:mod_chatbot/core/%.c=$(BUILD)/fz/core/%.o)
FZ_LIB    := $(BUILD)/fz/libchatcore.a

UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)
UNIT_ASAN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/unit/%)
UNIT_COMMON := $(wildcard tests/unit/common/*.c)
UNIT_HDR  := $(wildcard tests/unit/*.h)

FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/replay_%)
FUZZ_SECONDS ?= 300

GLUE_SRC  := $(sort $(wildcard mod_chatbot/*.c))
GLUE_HDR  := $(wildcard include/*.h) $(wildcard mod_chatbot/*.h)
MODULE    := $(BUILD)/mod_chatbot.so

.PHONY: all core module ui deps run test check-boundary check-prototypes check-codemap unit unit-asan \
        fuzz-replay fuzz integration e2e bench bench-bin install clean format format-check

all: module ui

core: $(CORE_LIB)

$(BUILD)/core/%.o: mod_chatbot/core/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/asan/core/%.o: mod_chatbot/core/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(CORE_CFLAGS) $(SAN_FLAGS) -O1 -c $< -o $@

$(ASAN_LIB): $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/fz/core/%.o: mod_chatbot/core/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(CORE_CFLAGS) $(SAN_FLAGS) -fsanitize=fuzzer-no-link -O1 -c $< -o $@

$(FZ_LIB): $(FZ_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- module ---------------------------------------------------------------
module: $(MODULE)

$(MODULE): $(CORE_LIB) $(GLUE_SRC) $(GLUE_HDR) $(CORE_HDR) apxs-build.sh
	APXS=$(APXS) BUILD=$(BUILD) ./apxs-build.sh

# ---- UI assets from npm ------------------------------------------------------
ui: htdocs/vendor/.stamp

htdocs/vendor/.stamp: package.json package-lock.json scripts/vendor.sh
	./scripts/vendor.sh
	@touch $@

# ---- set-up --------------------------------------------------------------------
deps:
	./scripts/deps.sh

run: deps
	$(MAKE) all
	./scripts/run.sh

# ---- tests ------------------------------------------------------------------------
test: deps
	$(MAKE) check-boundary
	$(MAKE) check-prototypes
	$(MAKE) check-codemap
	$(MAKE) format-check
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) unit-asan
	$(MAKE) fuzz-replay
	$(MAKE) integration
	$(MAKE) e2e
	@echo "== make test: all suites passed"

check-boundary:
	./scripts/check-boundary.sh

# No local prototypes: a function used across files is declared in a header.
check-prototypes:
	./scripts/check-prototypes.sh

check-codemap:
	$(PYTHON) scripts/check-codemap.py

$(BUILD)/unit/%: tests/unit/%.c $(CORE_LIB) $(UNIT_COMMON) $(UNIT_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -Itests/unit $< $(UNIT_COMMON) -o $@ $(CORE_LIB) $(CORE_LIBS) -lcmocka

$(BUILD)/asan/unit/%: tests/unit/%.c $(ASAN_LIB) $(UNIT_COMMON) $(UNIT_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(CORE_CFLAGS) $(SAN_FLAGS) -O1 -Itests/unit $< $(UNIT_COMMON) -o $@ $(ASAN_LIB) $(CORE_LIBS) -lcmocka

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; VECTORS=tests/vectors $$t; done

unit-asan: $(UNIT_ASAN)
	@set -e; for t in $(UNIT_ASAN); do echo "== $$t (asan+ubsan)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  VECTORS=tests/vectors $$t; done

# libFuzzer targets; the replay driver runs the checked-in corpus under
# ASan/UBSan without libFuzzer's engine (fast, deterministic).
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FZ_LIB)
	@mkdir -p $(dir $@)
	$(CLANG) $(CORE_CFLAGS) $(SAN_FLAGS) -fsanitize=fuzzer -O1 $< -o $@ $(FZ_LIB) $(CORE_LIBS)

$(BUILD)/fuzz/replay_fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(CLANG) $(CORE_CFLAGS) $(SAN_FLAGS) -O1 $< tests/fuzz/replay.c -o $@ $(ASAN_LIB) $(CORE_LIBS)

fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for t in $(FUZZ_REPLAY); do n=$${t##*/replay_fuzz_}; \
	  echo "== replay $$n corpus"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $$t tests/fuzz/corpus/$$n; done

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_BIN); do n=$${t##*/fuzz_}; \
	  mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	      $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n; done

integration: all
	$(PYTHON) -m pytest -q tests/fake_backend tests/integration $(PYTEST_ARGS)

e2e: all
	./scripts/e2e.sh

# Benchmark tools (load generator, fast fake backend): built for `make bench`
# only, standalone C (no project headers), warnings are errors.
BENCH_CFLAGS = -std=c11 -O2 -g $(WARN) -Werror
BENCH_BIN := $(BUILD)/bench/loadgen $(BUILD)/bench/fakebackend
# the load generator: bench/loadgen.c and its parts (bench/loadgen.h)
LOADGEN_SRC := $(sort $(wildcard bench/loadgen*.c))

$(BUILD)/bench/loadgen: $(LOADGEN_SRC) bench/loadgen.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(LOADGEN_SRC) -o $@

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@

bench-bin: $(BENCH_BIN)

bench: all bench-bin
	./bench/run.sh

install: all
	./scripts/install.sh

# every C file of the tree: the module, its tests, fuzzers and benchmark tools
FORMAT_SRC := $(CORE_SRC) $(CORE_HDR) $(GLUE_SRC) $(GLUE_HDR) \
              $(wildcard tests/unit/*.c tests/unit/*.h tests/unit/common/*.c \
                         tests/unit/common/*.h tests/fuzz/*.c tests/fuzz/*.h \
                         bench/*.c bench/*.h)

format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf $(BUILD) mod_chatbot/*.lo mod_chatbot/*.slo mod_chatbot/*.la mod_chatbot/.libs \
	       htdocs/vendor
