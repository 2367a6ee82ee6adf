"""The range of the ids a command takes (jobs, architectures, trials).

Ids are the database's signed 64-bit integers: the commands accept 1 to :data:`ID_MAX`, so
that an id past it is refused as a usage error instead of overflowing in the driver.
"""

ID_MAX = 2**63 - 1
"""The largest id of a job, an architecture or a trial."""
