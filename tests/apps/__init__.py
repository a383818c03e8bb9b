"""Small apps that live tests serve under gunicorn."""
