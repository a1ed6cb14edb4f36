"""Turning files and uploads into parsed documents."""
