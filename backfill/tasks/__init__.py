"""What a task is in the layer: its defaults (lane, priority, retry policy, timeout), the catalog that publishes
them to the database, and the modules a runner imports to find them."""
