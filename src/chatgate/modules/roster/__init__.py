"""The roster feature (RFC 6121 §2) and presence subscriptions (RFC 6121 §3, Appendix A)."""
