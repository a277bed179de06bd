"""Jinja2 templates of the web pages, shipped in the wheel as package data (see gatrix/resources.py)."""
