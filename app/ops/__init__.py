"""Operating Missive: logging, request ids, health and readiness, metrics, trusted proxies."""
