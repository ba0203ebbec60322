"""A/B testing: deterministic assignment, statistics, reports and simulation (see `stats`, `assign`)."""
