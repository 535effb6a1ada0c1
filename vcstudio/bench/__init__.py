"""The code of the ``vcstudio bench ...`` commands (benchmarks are commands, not jobs: they call
the jobs' run functions and record nothing in the run store).

    toy_edit   ``vcstudio bench toy-edit``: methods scored against the toy world's ground truth
"""
