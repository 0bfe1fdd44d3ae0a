"""backfill for Django's Tasks framework: a task backend (:mod:`.backend`), the worker's dispatch of jobs to
task functions (:mod:`.dispatch`) and the ``backfill_worker`` management command. Importing this package
imports nothing of Django; see docs/how-to/django.md."""
