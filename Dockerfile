# batterypred: the web server (gunicorn) or, with another command, the django-q2 worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Production settings unless told otherwise: no tracebacks, HTTPS only, a real key and the callback settings
# required at start (docs/operations.md, "Production checklist").
ENV DJANGO_DEBUG=0
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only-build-key-never-used-at-runtime-8f3a1c ML_CALLBACKS_DISABLED=1 \
    python manage.py collectstatic --noinput -v0 \
    && useradd --create-home --uid 10001 app && mkdir -p data && chown -R app data
USER app

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py train_model --synthetic --if-missing && gunicorn batterypred.wsgi --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} --access-logfile -"]
