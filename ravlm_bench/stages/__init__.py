"""The stages a cell's data passes through, each in its own module: the datasets found
(data sources), undecodable images dropped, leakage audited, external knowledge bases read,
features encoded and cached, retrieval, the components that do the work, and how each step
runs in one process or across torchrun's ranks.

May import: foundation, plugin_host, scoring, config, store, demo.
"""
