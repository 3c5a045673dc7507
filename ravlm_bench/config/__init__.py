"""A suite as configuration: the TOML file parsed and checked into typed objects
(:mod:`.suite`: systems, sweeps, retrieval keys, knowledge bases, ``[run]`` options), and
checked against the registry and the tasks' data before any work (:mod:`.preflight`).

May import: foundation, plugin_host, scoring.
"""
