"""Helpers shared by the test suites: database provisioning and waiting on database state."""
