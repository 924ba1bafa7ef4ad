"""Real backends for the credential-provider tests: an HTTP service, an extauth program, slapd."""
