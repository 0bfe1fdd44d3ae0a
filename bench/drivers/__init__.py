"""Python drivers: one module per system, each a small :class:`~bench.drivers.base.Driver` run by
:func:`bench.drivers.cli.main`. The Node driver speaks the same commands (``bench/node/driver.mjs``)."""
