# Two commands for a fresh machine: `make demo` (main job) and `make test` (whole suite).
PY := .venv/bin/python

.PHONY: setup demo test bench clean
setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

bench: setup
	$(PY) benchmarks/bench_sampler.py

clean:
	rm -rf runs .pytest_cache
