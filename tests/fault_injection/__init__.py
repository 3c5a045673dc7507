"""Fault injection for ravlm-bench: kill runs, damage what they read back, fuzz their inputs.

Every case is held to one contract: it ends either in correct results (every cell's status,
metrics, details, retrieval diagnostics and arrays equal to an uninterrupted run's) or in a
non-zero exit whose stderr holds exactly one error line (``error: ...``, the last line)
naming the file or the key, with at most log lines (``WARNING: ...``) before it. Exit 0 with
wrong or missing results, a Python traceback, a death by signal, a hang, or an error spread
over several lines (such as one ``failed:`` line per cell) is BAD. Fuzz cases are stricter:
an error must be exit 2.

``tests/test_fault_injection.py`` (marked slow) runs a small budget of every category. To
run it by hand, from the ``tests/`` folder of a checkout::

    cd tests && ../.venv/bin/python -m fault_injection [--budget-s N] [--seed S] [--out DIR]
                                                      [--fresh-processes]

    --budget-s N   wall-clock seconds for the cases after the baseline run (default 900).
                   The damage matrix always runs once whole; kills, leaderboard kills, suite
                   and COCO fuzz cases share what is left (each runs at least once), and more
                   damage rounds (other files of each kind, other garbage) fill the rest.
    --seed S       seeds every choice: kill points, which file of a kind is damaged, where a
                   bit flips, the fuzz mutations (default 0). Same seed, same cases.
    --out DIR      work directory (default: a new temporary directory). It keeps
                   report.txt (every BAD case), report.json, the logs of every CLI call
                   under logs/, and for each BAD case bad/<n>-<key>/ with the state the
                   failing call started from (before/), what it left less the cache
                   (after/), its stdout.txt and stderr.txt, and the steps (steps.txt).
    --fresh-processes
                   start every CLI call as a new interpreter (``python -m ravlm_bench``), as
                   a user does. By default calls are forked from a server that has already
                   imported torch, transformers, scikit-learn and the plugins: the child runs
                   the same ``ravlm_bench.cli.main`` on the same files and exits as the
                   interpreter would, without ~15 s of imports per call.

Every call runs offline with one torch thread (OMP_NUM_THREADS=1; see lab.child_env). It
prints a table of counts per category (tried, correct, clean error, BAD), the damage matrix
(file kind x damage), each kind of BAD case with a few examples and their steps, and exits 1
if any case is BAD.

The modules, in the order a run uses them:

- ``launcher``, ``fork_server``: start each ``ravlm-bench`` call, fresh or forked.
- ``contract``: the results compared and the judgement of one call (correct, clean error,
  BAD).
- ``lab``: the tiny suite (the tiny demo world via ``root = "demo"``; ``knn-exact`` and an
  ``xattn-exact`` head trained with a checkpoint every epoch; seeds 0 and 1), its baseline
  (run once, uninterrupted, from an empty cache, and its leaderboard published once), the
  states a case starts from, and where BAD cases are kept.
- ``kills``: runs and leaderboard publishes SIGKILLed at a file or a moment, then resumed.
- ``damage``: every damage to every kind of file a rerun reads back.
- ``fuzzing``, ``suite_fuzz``, ``coco_fuzz``, ``toml_text``: mutated suites and COCO
  annotation files.
- ``report``: the tables and the BAD cases with their steps; ``command``: the options and
  the budget.
"""
