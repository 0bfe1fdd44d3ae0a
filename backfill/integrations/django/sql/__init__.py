"""SQL of the Django backend (django.sql), loaded by backfill.core.statements."""
