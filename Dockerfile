# One image for the app, the feature API and the Prefect flow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

ARG WITH_PREFECT=0
# the lake profile's image (Spark driver and workers): Java 17 and pyspark, whose spark-class
# runs the workers, so executors have Feast and StreamFlow for spark.engine's Python writes
ARG WITH_SPARK=0
RUN if [ "$WITH_SPARK" = "1" ]; then apt-get update \
      && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
      && rm -rf /var/lib/apt/lists/*; fi
COPY requirements.txt requirements-prefect.txt requirements-spark.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt \
 && if [ "$WITH_PREFECT" = "1" ]; then pip install -r requirements-prefect.txt -c constraints.txt; fi \
 && if [ "$WITH_SPARK" = "1" ]; then pip install -r requirements-spark.txt -c constraints.txt; fi

COPY pyproject.toml README.md ./
COPY streamflow ./streamflow
COPY feature_repo ./feature_repo
COPY app ./app
COPY scripts ./scripts
COPY .streamlit ./.streamlit
RUN pip install --no-deps -e . && useradd --create-home streamflow && mkdir -p data /lake \
 && chown -R streamflow /app /lake
USER streamflow

# Overridden per service in docker-compose.yml; bind addresses are opened there, inside the container.
EXPOSE 8501 8000
CMD ["streamlit", "run", "app/streamlit_app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
