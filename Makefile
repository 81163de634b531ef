# All set-up happens here: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reavise-installed
SEED ?= 0

.PHONY: install demo pretrained pretrained-grid test test-all lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: a CPU build lies on disk; an unpinned torch pulls GBs of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,video,baselines]'
	touch $(STAMP)

install: $(STAMP)

# One torch thread per process: these small models train and infer faster so on 2 cores.
# The demo trains nothing: it uses the priors shipped in src/reavise/pretrained.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise benchmark configs/quick.yaml --out runs/demo --seed $(SEED)
	$(VENV)/bin/reavise report runs/demo

# Rebuild the shipped priors (src/reavise/pretrained/MODEL_CARD.md): a 2 h synthetic corpus
# (seed 1, 80 speakers; ~10 min), then each recipe of configs/pretrained/ (<= 30 min each).
PRETRAINED_RUN := runs/pretrained
pretrained: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise data synth --out $(PRETRAINED_RUN)/corpus --hours 2 \
	    --speakers 80 --seed 1 --workers 2
	for m in a-vae-synth av-cvae-synth; do \
	  OMP_NUM_THREADS=1 $(VENV)/bin/reavise train $(PRETRAINED_RUN)/corpus --out $(PRETRAINED_RUN)/$$m \
	      --config configs/pretrained/$$m.yaml --seed 0 --threads 1 --quiet || exit 1; \
	  cp $(PRETRAINED_RUN)/$$m/model.pt src/reavise/pretrained/$$m.pt; \
	done

# Rebuild the shipped GRID-s1 priors (MODEL_CARD.md) from ../shared/data/grid-s1 (real face
# video, CC BY 4.0): prepare (own face/mouth detection, ~6 min), 60 train utterances held out
# for validation, the lip reader (~10 min), then the A-VAE and the AV-CVAEs on its features.
GRID_SRC ?= ../shared/data/grid-s1
GRID_RUN := runs/grid
GRID_AV := configs/grid/av-cvae-lipreader.yaml
GRID_ATTENTION := configs/grid/av-cvae-frame-attention.yaml
GRID_FRONT := frontend_path=$(GRID_RUN)/lipreader/lipreader.pt
pretrained-grid: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise data prepare grid $(GRID_SRC) --out $(GRID_RUN)/corpus --seed 0 --workers 2
	$(VENV)/bin/reavise data holdout $(GRID_RUN)/corpus --out $(GRID_RUN)/dev --n 60 --seed 12
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise lipreader train $(GRID_RUN)/dev --out $(GRID_RUN)/lipreader \
	    --config configs/grid/lipreader.yaml --seed 0 --threads 1
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise train $(GRID_RUN)/dev --out $(GRID_RUN)/a-vae \
	    --config configs/grid/a-vae.yaml --seed 0 --threads 1 --quiet
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise train $(GRID_RUN)/dev --out $(GRID_RUN)/av-concat \
	    --config $(GRID_AV) --model-set $(GRID_FRONT) --seed 0 --threads 1 --quiet
	OMP_NUM_THREADS=1 $(VENV)/bin/reavise train $(GRID_RUN)/dev --out $(GRID_RUN)/av-attention \
	    --config $(GRID_ATTENTION) --model-set $(GRID_FRONT) --seed 0 --threads 1 --quiet
	cp $(GRID_RUN)/a-vae/model.pt src/reavise/pretrained/grid-s1-a-vae.pt
	$(VENV)/bin/reavise combine $(GRID_RUN)/av-concat/model.pt $(GRID_RUN)/a-vae/model.pt \
	    src/reavise/pretrained/grid-s1-av-concat.pt
	$(VENV)/bin/reavise combine $(GRID_RUN)/av-attention/model.pt $(GRID_RUN)/a-vae/model.pt \
	    src/reavise/pretrained/grid-s1-av-attention.pt

test: $(STAMP) browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q -m "not slow"

# Headless Chromium for the report page test (Debian package); the test skips without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null) || echo "chromium install failed: report test will skip"; \
	  else echo "no root apt-get: chromium not installed, the report test will skip"; fi; }

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run.py --out runs/bench --readme README.md

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
