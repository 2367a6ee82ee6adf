"""cellsearch: the command line, the one place that assembles the four packages.

``cells`` (the search space) <- ``workers`` (training) <- ``search`` (jobs, the driver, the
results database); ``dashboards`` reads that database. None of them imports this package, and
only this package imports all four (``cellsearch._cli``).
"""
