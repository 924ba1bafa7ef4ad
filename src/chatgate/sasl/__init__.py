"""SASL mechanisms (sans-I/O) and their registry."""
