"""Koppel's shared core: imported by every service, imports nothing from services."""
