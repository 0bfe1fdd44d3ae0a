"""The statements of :mod:`backfill.testing`, loaded by :mod:`backfill.testing.queries`."""
