"""Inbound filters and the origin matching they share with CORS checks."""
