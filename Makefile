# mptracebox: the README's two commands are `make demo` and `make test`.
SWIFT ?= swift

.PHONY: deps build release test demo bench fuzz clean

deps:
	scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Installs missing packages, builds, runs every test (lab tests need root).
test:
	scripts/test.sh

# Brings up the built-in demo lab, traces through it, tears it down.
demo: deps
	scripts/demo.sh

bench: deps
	$(SWIFT) run -c release mptracebox-bench wire

# Longer fuzzing of the wire parsers with libFuzzer (see docs/wire.md).
fuzz: deps
	scripts/fuzz.sh

clean:
	rm -rf .build .build-*
