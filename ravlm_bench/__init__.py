"""ravlm-bench: a plugin-based harness for retrieval-augmented vision-language models.

Plugins import :mod:`ravlm_bench.api` and nothing else. The subpackages are the harness
itself, in the order data flows through a run; each may import only those listed before it:

* ``foundation``: errors, paths, atomic files, seeding, torch.distributed helpers, version;
* ``plugin_host``: hook specs, the pluggy host, the component registry, contracts, options;
* ``scoring``: metric declarations, shared resamples, metrics, exact ranking;
* ``config``: suite files, typed run options, the preflight check;
* ``store``: the run directory, its ledger, checked cell records and arrays, feature cache;
* ``demo``: the embedded demo world, written in the real dataset formats;
* ``stages``: components, data sources, encoding, features, retrieval, execution;
* ``run``: a cell's pipeline and the runner over a suite;
* ``publish``: leaderboards, quality-against-cost fronts, run comparison;
* ``cli``: the ``ravlm-bench`` command.

``api`` (the plugin API) and ``testing`` (the conformance kit) sit above them all.
"""

from ravlm_bench.foundation.version import __version__

__all__ = ["__version__"]
