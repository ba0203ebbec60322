"""Side-by-side benchmarks of recstack against Surprise, implicit and cornac (`make bench`).

Not tests: pytest collects only `tests/`. Run with `python -m benchmarks.run [--quick]`.
"""
