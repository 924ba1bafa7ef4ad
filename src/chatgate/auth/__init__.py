"""Credential providers, stored secrets and brute-force protection."""
