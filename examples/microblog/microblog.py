from app import app  # noqa: F401  (gunicorn microblog:app, or flask --app microblog run)
