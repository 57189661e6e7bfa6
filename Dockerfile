# mvgviz on a GPU box: the Streamlit explorer on port 8501.
#   docker build -t mvgviz .
#   docker run --gpus all -p 8501:8501 -v /path/to/mvtec:/data -v mvgviz-cache:/cache \
#     -v $HOME/.cache/torch:/home/mvgviz/.cache/torch mvgviz
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MVGVIZ_DATA=/data \
    MVGVIZ_CACHE=/cache \
    TORCH_HOME=/home/mvgviz/.cache/torch

# OpenCV (headless) needs only libglib. Unpinned on purpose: it follows the base image's Ubuntu.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 mvgviz \
    && mkdir -p /data /cache /home/mvgviz/.cache/torch /app \
    && chown -R mvgviz:mvgviz /data /cache /home/mvgviz /app

WORKDIR /app
COPY --chown=mvgviz:mvgviz requirements.txt ./
# torch and torchvision come with the base image (CUDA build); keep them.
RUN grep -v -E '^(torch|torchvision)([<>=]|$)' requirements.txt > /tmp/req.txt \
    && pip install -r /tmp/req.txt

COPY --chown=mvgviz:mvgviz . .
RUN pip install --no-deps -e .

USER 1000:1000
VOLUME ["/data", "/cache", "/home/mvgviz/.cache/torch"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status == 200 else 1)"]

# python app.py: the demo data / default fit start with the server (streamlit run would wait for a browser)
CMD ["python", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true", "--browser.gatherUsageStats=false"]
