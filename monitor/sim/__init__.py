"""The simulated cohort behind the demo, the benchmarks and the integration tests: never part of
production (a layer contract keeps the production packages from importing it)."""
