# Image for the competition's final phase: the training code (dvc pipeline) and the test API.
#   docker build -t ffdv .                       # needs models/final.pt in the build context
#   docker run --rm -v /path/to/videos:/videos ffdv /videos/a.mp4 /videos/b.mp4
#       -> prints one "video,score" line per video (score = deepfake probability)
#   docker run --rm -v $PWD/data:/app/data --entrypoint sh ffdv -c "git init -q && dvc repro"
#       -> reruns the whole pipeline (training included) on the mounted data/ (.git is not copied)
# CPU torch by default; for CUDA pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: dvc needs it to run the pipeline; libglib2.0-0: OpenCV's runtime dependency on slim images
RUN apt-get update \
    && apt-get install -y --no-install-recommends git libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
RUN test -f models/final.pt \
    || (echo "models/final.pt missing from the build context: run 'dvc repro train' first" >&2; exit 1)
RUN python -m pip install --extra-index-url "${TORCH_INDEX}" .

ENTRYPOINT ["python", "-m", "pipeline.infer", "--checkpoint", "/app/models/final.pt"]
CMD ["--help"]
