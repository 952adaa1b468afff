"""Django's Postgres backend with a health check that costs no round trip (`common.postgres.base`)."""
