# The two contract commands: `make crashtest` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS ?= btrfs,ext4-overlay2
CUTS ?= 3
STATES ?= 24
SEED ?= 1
OUT ?= results
KERNEL ?=
KERNEL_MODULES ?=
CUT_AT ?=
MOUNT_OPTS ?=
MKFS_OPTS ?=
KERNELS ?=
JOBS ?= 1
SHARD ?=
MINIMIZE_STEPS ?= 0
PYTEST_ARGS ?=

RUN_ARGS := --backends '$(BACKENDS)' --cuts '$(CUTS)' --states '$(STATES)' --seed '$(SEED)' --out '$(OUT)'
RUN_ARGS += $(if $(KERNEL),--kernel '$(KERNEL)')
RUN_ARGS += $(if $(KERNEL_MODULES),--kernel-modules '$(KERNEL_MODULES)')
RUN_ARGS += $(if $(CUT_AT),--cut-at '$(CUT_AT)')
RUN_ARGS += $(if $(MOUNT_OPTS),--mount-options '$(MOUNT_OPTS)')
RUN_ARGS += $(if $(MKFS_OPTS),--mkfs-options '$(MKFS_OPTS)')
RUN_ARGS += $(if $(KERNELS),--kernels '$(KERNELS)')
RUN_ARGS += --jobs '$(JOBS)' $(if $(SHARD),--shard '$(SHARD)') --minimize-steps '$(MINIMIZE_STEPS)'

.PHONY: crashtest test unit lint bench images host-deps clean

crashtest: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest run $(RUN_ARGS)

test: host-deps $(VENV)/.installed lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest -m 'not vm' $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check harness tests
	$(VENV)/bin/mypy

bench: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest bench --out '$(OUT)/bench.json'

images: host-deps $(VENV)/.installed
	$(VENV)/bin/crashtest images $(if $(KERNEL),--kernel '$(KERNEL)')

host-deps:
	@scripts/install-host-deps

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
