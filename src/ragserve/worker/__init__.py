"""Ingestion workers on a queue (Celery over Redis): `ragserve worker`."""
