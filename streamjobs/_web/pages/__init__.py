"""One module per area of the dashboard; each exports ``routes``."""
