"""A suite as configuration: the TOML file parsed and checked (:mod:`.suite`), and checked
again against the registry and the tasks' data before and while it runs (:mod:`.preflight`)."""
