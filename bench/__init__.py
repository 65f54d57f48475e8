"""lettingo's benchmarks: each module is a script that prints a table and writes its figures to
bench/results/NAME.json, run from the repository root as `python -m bench.NAME [options]` (see each module's
docstring). They use lettingo's public interfaces and the shared helpers in _common.py; tiny_model.py builds the
tiny test model the test suite and the GPU check share."""
