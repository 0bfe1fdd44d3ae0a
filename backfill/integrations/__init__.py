"""What connects backfill to other frameworks, each optional and imported only when used: Django's Tasks
framework (``backfill.integrations.django``) and OpenTelemetry (``backfill.integrations.opentelemetry``)."""
