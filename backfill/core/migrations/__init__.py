"""Installing and upgrading the schema: Graphile's revisions and backfill's own tables beside them."""
