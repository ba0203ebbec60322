"""A/B testing: `assign` (sticky hashing), `stats` (tests, intervals, SRM, sample size, mSPRT),
`experiments` (definitions and life cycle in the store), `serving` (the service's hook: variant,
list, buffered exposure log), `report` (outcomes from events, the report), `plot` (cumulative lift),
`simulate` (proof by simulation through the same code), `commands` (`recstack ab …`)."""
