"""Historian: swinging-door compression, embedded default backend, InfluxDB backend, store-and-forward."""
