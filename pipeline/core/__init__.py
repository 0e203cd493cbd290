"""Infrastructure every other part uses, importing nothing outside core: the configuration, its checks
and slices (config, config_schema, config_checks, slices, specs, benchmark_defs), artifacts and their
provenance, the process environment, Hub access and the machine's GPUs."""
