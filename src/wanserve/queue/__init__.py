"""The durable job queue on the Redis protocol (Valkey embedded, Redis/Valkey in production)."""
