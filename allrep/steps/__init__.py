"""One module per notebook step, named after it (``30_ensemble`` -> ``step30_ensemble``).

A step module reads its declared inputs and writes its declared outputs through the
:class:`allrep.runner.context.Context` its notebook passes in; the library modules it calls compute
and return, and write no results files.
"""
