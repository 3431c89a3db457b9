"""Evaluations: prompt suites (``suites``), acceptance sweeps (``sweep``), their reports (``report``)
and the side-by-side benchmark (``bench``); ``cli`` holds the ``specdiff`` commands over them."""
