"""SQL of job outcomes as callers read them (results.sql), loaded by backfill.core.statements."""
