# dcms: a thin front for CMake and the scripts. `make help` lists the targets.
.PHONY: all build run test san bench fuzz fmt fmt-check deps clean help ui-screenshots

SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find src include tests -name '*.[ch]')

all: build

help:
	@echo "make          build build/dcmsd (release)"
	@echo "make run      build and run dcmsd on 127.0.0.1:8080 with SQLite in ./data"
	@echo "make test     unit, API (SQLite and PostgreSQL) and sanitizer suites"
	@echo "make san      the whole suite under AddressSanitizer + UBSan only"
	@echo "make bench    wrk against dcmsd and nginx, then the module benches (bench/bench-*.sh)"
	@echo "make fuzz     build the libFuzzer targets and run each for DCMS_FUZZ_SECONDS"
	@echo "make fmt      clang-format every C file"
	@echo "make ui-screenshots  regenerate docs/ui/*.png (its own dcmsd and chromium; see docs/ui.md)"

deps:
	@scripts/deps.sh

build: deps
	@[ -f build/build.ninja ] || cmake --preset release >/dev/null
	@cmake --build --preset release

run: build
	@scripts/run-dev.sh

test: deps
	@scripts/test.sh

san: deps
	@scripts/test.sh --san

bench: build
	@bench/run.sh
	@for b in bench/bench-*.sh; do [ -e "$$b" ] || continue; "$$b" || exit 1; done

fuzz: deps
	@[ -f build-fuzz/build.ninja ] || cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz
	@scripts/fuzz.sh

ui-screenshots: build
	@node scripts/ui-screenshots.mjs

fmt:
	@clang-format -i $(filter %.c %.h,$(SOURCES))

fmt-check:
	@clang-format --dry-run --Werror $(filter %.c %.h,$(SOURCES))

clean:
	@rm -rf build build-dev build-fuzz
