"""Infrastructure every other part uses: the configuration and its checks (config, specs), artifacts and
their provenance, the process environment, Hub access, and the checks run before any job (preflight)."""
