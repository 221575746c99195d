"""Schemas: versioned .avsc files, the catalogue of job types, compatibility rules, the schema
registry and its subjects.
"""
