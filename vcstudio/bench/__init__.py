"""The code of the ``vcstudio bench ...`` commands (benchmarks are commands, not jobs: they call
the jobs' and pipelines' functions and record nothing in the run store; cli/bench.py only parses
their flags).

    pipelines  ``vcstudio bench tune|sample|long|control``: speed and memory on full-size
               architectures with random weights (also ``vcstudio long --bench``)
    metrics    ``vcstudio eval --bench`` / ``eval-vcd --bench``: the metrics' own speed
    serve      ``vcstudio bench serve``: visitors (and, public, a stranger) against a running app
    attack     the stranger of ``bench serve --public``: what must stay unreachable
    toy_edit   ``vcstudio bench toy-edit``: methods scored against the toy world's ground truth
"""
