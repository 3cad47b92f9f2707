# One image for every Arachne role (spider, worker, dashboard); the command picks the role.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY arachne ./arachne
RUN pip install --no-cache-dir .
RUN useradd --create-home arachne
USER arachne
ENV ARACHNE_DATA_DIR=/home/arachne/data
ENTRYPOINT ["arachne"]
CMD ["--help"]
