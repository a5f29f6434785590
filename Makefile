# `make demo` runs the whole pipeline on the embedded default; `make test` runs the test suite.
# Both create .venv and install the pinned dependencies when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo data tiny mini soundfont test bench trials compare clean musicnn sky-check gpu-check

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps tinysoundfont==0.3.7  # its pyaudio dependency is for playback only
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The demo corpus: the target style the demo fine-tunes on, deterministic (matches data/raw.dvc).
data: install
	$(PY) -m musicgen_lora corpus --out data/raw --target --tracks 70 --min-seconds 10 --max-seconds 90
	dvc add -q data/raw

# Rebuild the embedded tiny MusicGen (committed under assets/tiny-musicgen).
tiny: install
	$(PY) -m musicgen_lora bootstrap --out assets/tiny-musicgen

# The General MIDI SoundFont (Debian's fluid-soundfont-gm) that renders the real compositions (tiny/scores.py).
soundfont:
	test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq fluid-soundfont-gm) || echo "install fluid-soundfont-gm (Debian/Ubuntu) for the mini model"

# Build the embedded mini MusicGen from real compositions (hours on 2 cores; resumes after a kill:
# its checkpoints live in build/mini).
mini: install soundfont
	$(PY) -m musicgen_lora mini --work build/mini --out assets/mini-musicgen

demo: install
	test -d data/raw || $(MAKE) data
	test -d .git || (git init -q && git add -A && git commit -qm "demo workspace")
	dvc repro
	@echo "adapters:   models/best_model models/final_model"
	@echo "audio:      evaluation/{base_model,best_model,final_model}/ and evaluation/comparison_results.jsonl"
	@echo "summary:    metrics/summary.md metrics/summary.json metrics/plots/"
	@cat metrics/summary.md
	@echo "page:       $(abspath metrics/report.html)"

# The browser test (tests/report/test_page_browser.py) needs Debian's chromium; elsewhere it skips.
test: install soundfont
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium not installed: the browser test will skip"
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q --durations=15

# The five reference trainings of experiments/TRIALS.md as tagged experiments, then their report.
trials: install
	$(PY) -m musicgen_lora trials $(TRIALS)
	$(PY) -m musicgen_lora compare --trials

compare: install
	$(PY) -m musicgen_lora compare --trials

# cloud/experiment.sky.yaml through SkyPilot's own task loader, in a throwaway venv (removed after):
# SkyPilot and its dependencies are ~460 MB, too much for the test environment. Needs the registry.
sky-check:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; python3 -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install -q skypilot==0.14.1; \
	"$$tmp/venv/bin/python" -c "import sky; t = sky.Task.from_yaml('cloud/experiment.sky.yaml'); \
	print('sky-check:', t.name, t.resources, 'ok')"

# The GPU path on a machine with CUDA (bench/gpu_check.py): the pipeline on a musicgen-small-shaped
# checkpoint in bf16 with a kill and resume, LoRA step time and peak memory, generation speed;
# figures into bench/results.json under "gpu". Without CUDA it says so and exits 0.
gpu-check: install
	$(PY) -m bench.gpu_check

# Benchmarks: bench/results.json and bench/results.md.
bench: install
	$(PY) -m bench

# The pretrained musicnn taggers (PyPI wheel musicnn==0.1.0, ISC) converted for the PyTorch port in
# src/musicgen_lora/metrics/musicnn.py: assets/musicnn/{MTT,MSD}_musicnn.safetensors, tags.json,
# reference_outputs.safetensors (the original TF model on reference_clips/), PROVENANCE.md, LICENSE.
# Run once, by hand; the outputs are committed and nothing else needs TensorFlow or librosa.  It needs
# network access to the package registry: it builds a throwaway venv in a temp dir (removed after)
# with TensorFlow 2.15 (the last one whose tf.compat.v1.layers work without tf_keras), numpy 1.23
# (musicnn's float16 log-mel overflows under numpy 2's promotion rules) and librosa 0.8.1 (the newest
# with musicnn's reflect-padded STFT; 0.9 pads with zeros; needs numpy < 1.24); Python 3.9-3.11.
# The clips themselves come from tools/musicnn_clips.py (fluidsynth).
musicnn:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	python3 -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install -q --upgrade pip; \
	"$$tmp/venv/bin/pip" install -q 'tensorflow-cpu>=2.15,<2.16' 'numpy==1.23.5' 'librosa==0.8.1' safetensors; \
	"$$tmp/venv/bin/pip" download -q --no-deps musicnn==0.1.0 -d "$$tmp"; \
	"$$tmp/venv/bin/pip" install -q --no-deps "$$tmp/musicnn-0.1.0-py3-none-any.whl"; \
	"$$tmp/venv/bin/python" tools/musicnn_convert.py --wheel "$$tmp/musicnn-0.1.0-py3-none-any.whl"

clean:
	rm -rf data/segments data/tokens models/best_model models/final_model models/checkpoints evaluation metrics
